//! The OIDC stand-in's memory: users, sign-in requests waiting on the page, authorization codes, refresh-token
//! families and opaque access tokens.
//!
//! The rules a relying party depends on live here, apart from HTTP, each in one place: a code works once, for the
//! redirect URI and PKCE verifier it was issued for, and a replayed code revokes what it produced (RFC 6749
//! §4.1.2); refresh tokens rotate, and presenting a rotated one again is taken as theft and revokes the whole
//! family, as Auth0's reuse detection does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use url::Url;
use uuid::Uuid;

use super::OidcUser;

/// How long a sign-in request may sit on the page.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Spent codes are remembered this long, so a replay is recognised as one.
const CODE_RETENTION: Duration = Duration::from_secs(60 * 60);

/// Auth0's words for every refused refresh token (unknown, reused, revoked): the client cannot tell them apart.
pub const REFRESH_REFUSED: &str = "Unknown or invalid refresh token.";

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub redirect_uri: Url,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub login_hint: Option<String>,
    pub sign_up: bool,
}

/// What a code, and every token issued from it, stands for.
#[derive(Debug, Clone)]
pub struct Grant {
    pub user: OidcUser,
    /// The provider's session (`sid`), one per sign-in.
    pub session_id: String,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub auth_time: i64,
}

impl Grant {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}

struct Code {
    grant: Grant,
    redirect_uri: Url,
    code_challenge: String,
    issued: Instant,
    spent: bool,
    /// The refresh-token family issued from this code, revoked if the code is replayed.
    family: Option<u64>,
}

struct Family {
    revoked: bool,
    grant: Grant,
}

struct RefreshRecord {
    family: u64,
    used: bool,
}

/// Why a grant was refused: OAuth's `invalid_grant`, with its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidGrant(pub &'static str);

pub struct Store {
    users: Vec<OidcUser>,
    pending: HashMap<String, (AuthorizeRequest, Instant)>,
    codes: HashMap<String, Code>,
    families: HashMap<u64, Family>,
    next_family: u64,
    refresh_tokens: HashMap<String, RefreshRecord>,
    /// Opaque access token → (subject, expiry in Unix seconds).
    opaque_access_tokens: HashMap<String, (String, i64)>,
    pub code_ttl: Duration,
    pub reuse_detections: usize,
}

impl Store {
    pub fn new(users: Vec<OidcUser>, code_ttl: Duration) -> Self {
        Self {
            users,
            pending: HashMap::new(),
            codes: HashMap::new(),
            families: HashMap::new(),
            next_family: 0,
            refresh_tokens: HashMap::new(),
            opaque_access_tokens: HashMap::new(),
            code_ttl,
            reuse_detections: 0,
        }
    }

    pub fn users(&self) -> &[OidcUser] {
        &self.users
    }

    pub fn user(&self, subject: &str) -> Option<&OidcUser> {
        self.users.iter().find(|user| user.subject == subject)
    }

    pub fn user_by_email(&self, email: &str) -> Option<&OidcUser> {
        self.users.iter().find(|user| user.email.eq_ignore_ascii_case(email.trim()))
    }

    /// The user with this email, created on the spot (an Auth0 database sign-up) when there is none.
    pub fn user_for_email(&mut self, email: &str) -> OidcUser {
        if let Some(user) = self.user_by_email(email) {
            return user.clone();
        }
        let user = OidcUser {
            subject: format!("auth0|{}", Uuid::new_v4().simple()),
            email: email.to_owned(),
            given_name: None,
            family_name: None,
            // Verified here, unlike a fresh Auth0 database sign-up, so a demo user typed in sees their email.
            email_verified: true,
        };
        self.users.push(user.clone());
        user
    }

    pub fn park(&mut self, request: AuthorizeRequest) -> String {
        self.pending.retain(|_, (_, created)| created.elapsed() < PENDING_TTL);
        let id = Uuid::new_v4().simple().to_string();
        self.pending.insert(id.clone(), (request, Instant::now()));
        id
    }

    pub fn parked(&self, id: &str) -> Option<&AuthorizeRequest> {
        self.pending.get(id).filter(|(_, created)| created.elapsed() < PENDING_TTL).map(|(request, _)| request)
    }

    pub fn unpark(&mut self, id: &str) -> Option<AuthorizeRequest> {
        let (request, created) = self.pending.remove(id)?;
        (created.elapsed() < PENDING_TTL).then_some(request)
    }

    /// A code for `user` answering `request`: a new provider session (`sid`).
    pub fn issue_code(&mut self, request: &AuthorizeRequest, user: OidcUser, now: i64) -> String {
        let retention = self.code_ttl.max(CODE_RETENTION);
        self.codes.retain(|_, code| code.issued.elapsed() < retention);
        let code = Uuid::new_v4().simple().to_string();
        let grant = Grant {
            user,
            session_id: Uuid::new_v4().simple().to_string(),
            nonce: request.nonce.clone(),
            scopes: request.scopes.clone(),
            audience: request.audience.clone(),
            auth_time: now,
        };
        self.codes.insert(
            code.clone(),
            Code {
                grant,
                redirect_uri: request.redirect_uri.clone(),
                code_challenge: request.code_challenge.clone(),
                issued: Instant::now(),
                spent: false,
                family: None,
            },
        );
        code
    }

    /// The `authorization_code` grant. A second use of a code is refused and revokes the refresh tokens the first
    /// use produced. A refresh token is issued when `offline_access` was granted and `issue_refresh_token` says so.
    pub fn exchange_code(
        &mut self,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
        issue_refresh_token: bool,
    ) -> Result<(Grant, Option<String>), InvalidGrant> {
        let code_ttl = self.code_ttl;
        let record = self.codes.get_mut(code).ok_or(InvalidGrant("Invalid authorization code"))?;
        if record.spent {
            if let Some(family) = record.family.and_then(|family| self.families.get_mut(&family)) {
                family.revoked = true;
            }
            return Err(InvalidGrant("Invalid authorization code"));
        }
        record.spent = true;
        if record.issued.elapsed() >= code_ttl {
            return Err(InvalidGrant("Invalid authorization code"));
        }
        if redirect_uri.and_then(|raw| Url::parse(raw).ok()).as_ref() != Some(&record.redirect_uri) {
            return Err(InvalidGrant("Invalid redirect_uri: it must be the one the code was issued for"));
        }
        match code_verifier {
            Some(verifier) if pkce_s256_matches(&record.code_challenge, verifier) => {}
            Some(_) => return Err(InvalidGrant("Failed to verify code verifier")),
            None => return Err(InvalidGrant("Parameter 'code_verifier' is required")),
        }
        let grant = record.grant.clone();
        let refresh_token = if issue_refresh_token && grant.has_scope("offline_access") {
            let family = self.next_family;
            self.next_family += 1;
            self.families.insert(family, Family { revoked: false, grant: grant.clone() });
            if let Some(record) = self.codes.get_mut(code) {
                record.family = Some(family);
            }
            Some(self.new_refresh_token(family))
        } else {
            None
        };
        Ok((grant, refresh_token))
    }

    /// The `refresh_token` grant. With rotation, the presented token is spent and a new one issued; presenting a
    /// spent one again revokes its family (reuse detection). Without rotation, the token stays and none is issued.
    pub fn refresh(&mut self, token: &str, rotate: bool) -> Result<(Grant, Option<String>), InvalidGrant> {
        const REFUSED: InvalidGrant = InvalidGrant(REFRESH_REFUSED);
        let record = self.refresh_tokens.get(token).ok_or(REFUSED)?;
        let (family_id, used) = (record.family, record.used);
        let family = self.families.get_mut(&family_id).ok_or(REFUSED)?;
        if family.revoked {
            return Err(REFUSED);
        }
        if used {
            family.revoked = true;
            self.reuse_detections += 1;
            return Err(REFUSED);
        }
        let grant = family.grant.clone();
        if !rotate {
            return Ok((grant, None));
        }
        if let Some(record) = self.refresh_tokens.get_mut(token) {
            record.used = true;
        }
        Ok((grant, Some(self.new_refresh_token(family_id))))
    }

    /// RFC 7009: the token's family is revoked; an unknown token is not an error.
    pub fn revoke(&mut self, token: &str) {
        if let Some(family) = self.refresh_tokens.get(token).and_then(|record| self.families.get_mut(&record.family)) {
            family.revoked = true;
        }
    }

    /// Every refresh token issued so far stops working.
    pub fn revoke_all_refresh_tokens(&mut self) {
        for family in self.families.values_mut() {
            family.revoked = true;
        }
    }

    pub fn remember_opaque_access_token(&mut self, token: &str, subject: &str, expires_at: i64) {
        self.opaque_access_tokens.insert(token.to_owned(), (subject.to_owned(), expires_at));
    }

    /// The subject of a live opaque access token.
    pub fn opaque_access_token(&self, token: &str, now: i64) -> Option<&str> {
        self.opaque_access_tokens.get(token).filter(|(_, expires_at)| *expires_at > now).map(|(sub, _)| sub.as_str())
    }

    fn new_refresh_token(&mut self, family: u64) -> String {
        let token = format!("v1.{}", Uuid::new_v4().simple());
        self.refresh_tokens.insert(token.clone(), RefreshRecord { family, used: false });
        token
    }
}

/// `BASE64URL(SHA256(verifier)) == challenge` (RFC 7636 §4.6).
pub fn pkce_s256_matches(challenge: &str, verifier: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}

/// 43 base64url characters: the length of a SHA-256 digest.
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AuthorizeRequest {
        AuthorizeRequest {
            redirect_uri: Url::parse("http://127.0.0.1:1/callback").expect("url"),
            state: None,
            nonce: Some("n".into()),
            code_challenge: URL_SAFE_NO_PAD.encode(digest(&SHA256, b"verifier")),
            scopes: vec!["openid".into(), "offline_access".into()],
            audience: None,
            login_hint: None,
            sign_up: false,
        }
    }

    fn store() -> Store {
        Store::new(OidcUser::defaults(), Duration::from_secs(600))
    }

    #[test]
    fn a_code_works_once_and_its_replay_revokes_what_it_produced() {
        let mut store = store();
        let user = store.users()[0].clone();
        let code = store.issue_code(&request(), user, 0);
        let redirect = Some("http://127.0.0.1:1/callback");
        let (_, refresh) = store.exchange_code(&code, redirect, Some("verifier"), true).expect("first use");
        let refresh = refresh.expect("offline_access gives a refresh token");
        assert!(store.exchange_code(&code, redirect, Some("verifier"), true).is_err(), "replay");
        assert_eq!(store.refresh(&refresh, true).map(|_| ()), Err(InvalidGrant(REFRESH_REFUSED)));
    }

    #[test]
    fn the_redirect_uri_and_verifier_must_match() {
        let mut store = store();
        let user = store.users()[0].clone();
        let code = store.issue_code(&request(), user.clone(), 0);
        assert!(store.exchange_code(&code, Some("http://127.0.0.1:1/other"), Some("verifier"), true).is_err());
        let code = store.issue_code(&request(), user.clone(), 0);
        assert!(store.exchange_code(&code, Some("http://127.0.0.1:1/callback"), Some("wrong"), true).is_err());
        let code = store.issue_code(&request(), user, 0);
        assert!(store.exchange_code(&code, Some("http://127.0.0.1:1/callback"), None, true).is_err());
    }

    #[test]
    fn a_reused_refresh_token_revokes_the_whole_family() {
        let mut store = store();
        let user = store.users()[0].clone();
        let code = store.issue_code(&request(), user, 0);
        let (_, first) =
            store.exchange_code(&code, Some("http://127.0.0.1:1/callback"), Some("verifier"), true).expect("ok");
        let first = first.expect("refresh token");
        let (_, second) = store.refresh(&first, true).expect("rotates");
        let second = second.expect("a new token");
        assert!(store.refresh(&first, true).is_err(), "the spent token is refused");
        assert_eq!(store.reuse_detections, 1);
        assert!(store.refresh(&second, true).is_err(), "and its successor with it");
    }

    #[test]
    fn without_rotation_the_same_token_keeps_working() {
        let mut store = store();
        let user = store.users()[0].clone();
        let code = store.issue_code(&request(), user, 0);
        let (_, token) =
            store.exchange_code(&code, Some("http://127.0.0.1:1/callback"), Some("verifier"), true).expect("ok");
        let token = token.expect("refresh token");
        for _ in 0..3 {
            let (_, next) = store.refresh(&token, false).expect("works again");
            assert!(next.is_none(), "no new token is issued");
        }
    }
}
