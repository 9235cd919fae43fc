//! Signing in with an OpenID Connect provider (`IDENTITY_PROVIDER=oidc`), against the OIDC stand-in shaped like an
//! Auth0 tenant: the same routes, session cookie, minter and row-level security as WorkOS.

mod bearer;
mod discovery;
mod id_token;
mod refresh;
mod replicas;
mod sign_in;
mod sign_out;

use url::Url;

pub fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url).expect("absolute URL").query_pairs().into_owned().collect()
}

pub fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone())
}
