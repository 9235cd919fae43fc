//! The typed client for InsForge's records API: the only place authbridge reads or writes todos.
//!
//! Every call carries a token minted for the user it is made for, so PostgreSQL's RLS, not this code, decides
//! which rows the call can see or touch. The client owns its timeouts, its retry rule and the mapping of every
//! outcome to one [`InsforgeError`], so handlers only decide which status each error becomes.
//!
//! Retry rule: a read (GET) is tried a second time when the first attempt could not connect at all (nothing
//! reached InsForge, so nothing can have happened twice). Writes are never retried: a write whose answer was
//! lost may have been applied, and repeating it could create a second todo; it is reported as
//! [`InsforgeError::WriteUnconfirmed`], so the caller can be told to look before trying again. (InsForge itself may
//! still send any write twice, and a caller may send a create again. Each write is made so its repeat is harmless:
//! a create carries its id, so its repeat meets its own row ([`InsforgeClient::create_todo_with_id`]); a delete
//! reads the todo first; a rename sends the new title unfiltered; a toggle is a compare-and-set, whose repeat finds
//! nothing to do, see [`InsforgeClient::update_todo`].)

use std::future::Future;
use std::sync::Arc;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use uuid::Uuid;

use crate::config::InsforgeConfig;
use crate::identity::UserIdentity;
use crate::insforge::minter::{MintError, TokenMinter};
use crate::outbound::{self, Failure, Upstream};
use crate::todo::{Page, Space, Title, Todo, TodoPatch};

/// The records table the todo feature lives in.
const TODOS_TABLE: &str = "todos";
/// The name PostgreSQL gives the primary key of `todos` (`migrations/0003_todos.sql` leaves it to the default).
const TODOS_PRIMARY_KEY: &str = "todos_pkey";
/// Who the readiness probe asks as: an id no identity provider issues (WorkOS ids start `user_`, Auth0's carry a
/// `|`), so the probe can never see anyone's todos.
pub const READINESS_PROBE_USER: &str = "authbridge-readiness-probe";
/// Newest first; `id` breaks ties between todos created in the same transaction so pages never overlap.
const NEWEST_FIRST: &str = "created_at.desc,id.desc";
/// How much of a non-JSON error body is kept for the logs.
const MAX_MESSAGE_CHARS: usize = 300;

/// Everything that can go wrong talking to InsForge, as the app needs to tell it apart.
///
/// Messages come from InsForge or PostgREST and are meant for logs, not for end users. No variant ever holds a
/// token: the client scrubs the token it sent out of anything the server echoes back.
#[derive(Debug, thiserror::Error)]
pub enum InsforgeError {
    /// No row came back: the todo does not exist, or RLS hides it from this user (the two are indistinguishable
    /// on purpose). The app's 404. An HTTP 404 from InsForge is *not* this: it means the table or route is
    /// missing (migrations not applied, wrong URL) and is reported as [`InsforgeError::Upstream`].
    #[error("the todo was not found")]
    NotFound,
    /// InsForge refused the input: a data error of PostgreSQL's (SQLSTATE class 22 or 23) in a 400, or a 422; or
    /// the request was invalid before it was sent. Any other 400 is [`InsforgeError::Upstream`].
    #[error("InsForge refused the input: {message}")]
    InvalidInput { message: String },
    /// HTTP 401: the token was refused (wrong secret, expired, missing).
    #[error("InsForge refused the credentials: {message}")]
    Unauthorized { message: String },
    /// HTTP 403: the token was accepted but the operation is not allowed (an RLS `with check`, a grant).
    /// `code` is PostgREST's SQLSTATE (`42501` for both of those), or InsForge's own error name in its shape
    /// (`AUTH_UNAUTHORIZED`); `message` is PostgreSQL's text, in the language of the server's `lc_messages`.
    #[error("InsForge forbade the operation: {}: {message}", .code.as_deref().unwrap_or("(no code)"))]
    Forbidden { code: Option<String>, message: String },
    /// A delete RLS refused for a todo RLS lets the user see (an organization todo of another member, deleted by
    /// someone who is neither its author nor an admin).
    #[error("the todo is visible but may not be deleted by this user")]
    NotDeletable,
    /// Any other answer that is not a success, or a success whose body could not be understood.
    #[error("InsForge answered HTTP {status}: {message}")]
    Upstream { status: u16, message: String },
    /// InsForge did not answer within the configured request (or connect) timeout.
    #[error("InsForge did not answer in time")]
    Timeout,
    /// InsForge could not be reached at all (refused, DNS failure, TLS failure).
    #[error("could not connect to InsForge")]
    Connect,
    /// The connection broke after a read was sent. (For a write, see [`InsforgeError::WriteUnconfirmed`].)
    #[error("the connection to InsForge broke during the request")]
    Transport,
    /// A write that reached InsForge but was not confirmed: it timed out (ours, or InsForge's own wait for
    /// PostgREST), or the connection broke after it was sent (ours to InsForge, or InsForge's to PostgREST, which
    /// InsForge answers with its own 500). It may have been applied: InsForge and PostgREST go on with a request
    /// whose client has gone.
    #[error("InsForge did not confirm the write (timed out: {timed_out}; else the connection broke)")]
    WriteUnconfirmed { timed_out: bool },
    /// HTTP 409 for a unique violation (`23505`) of the todos' primary key: a todo with the id sent exists. Only a
    /// create can meet it, and [`InsforgeClient::create_todo_with_id`] turns it into the todo or
    /// [`InsforgeError::IdTaken`] before it leaves the client. Any other 409 (another unique constraint, a foreign
    /// key's `23503`) is [`InsforgeError::Upstream`].
    #[error("a todo with this id exists")]
    IdExists,
    /// A create whose id is already taken by a todo that is not the one this create would make: a todo this user
    /// cannot see, another member's, or their own with another title or space. Nothing was written.
    #[error("the todo id is already taken")]
    IdTaken,
    #[error(transparent)]
    Token(#[from] MintError),
    #[error("INSFORGE_URL cannot be used as the base of the API paths")]
    BaseUrl,
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(String),
}

/// A todo after an update, and what the update changed in it (empty: it already was as asked).
#[derive(Debug)]
pub struct Updated {
    pub todo: Todo,
    pub changed: TodoPatch,
}

/// The InsForge records client. Cloning is cheap (one shared connection pool and signing key).
#[derive(Clone, Debug)]
pub struct InsforgeClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    todos_url: Url,
    minter: TokenMinter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

#[derive(Serialize)]
struct NewTodo<'a> {
    /// Chosen by authbridge, so that the same insert sent twice cannot make two todos.
    id: Uuid,
    title: &'a str,
    /// `null` for a personal todo; RLS accepts an organization only from its active members.
    organization_id: Option<&'a str>,
}

impl InsforgeClient {
    pub fn new(config: &InsforgeConfig) -> Result<Self, InsforgeError> {
        let minter = TokenMinter::new(config)?;
        let http = outbound::client(config.connect_timeout, config.request_timeout)
            .map_err(|e| InsforgeError::HttpClient(e.to_string()))?;
        let api_url = |segments: &[&str]| outbound::endpoint(&config.url, segments).ok_or(InsforgeError::BaseUrl);
        Ok(InsforgeClient {
            inner: Arc::new(Inner { http, todos_url: api_url(&["api", "database", "records", TODOS_TABLE])?, minter }),
        })
    }

    /// The todos of one space the user can see, newest first. The space is a choice of list, not a permission:
    /// RLS alone decides which rows of it come back (a personal list holds only the user's own todos, an
    /// organization's only while they are an active member).
    pub async fn list_todos(&self, user: &UserIdentity, space: &Space, page: Page) -> Result<Vec<Todo>, InsforgeError> {
        let token = self.token(user)?;
        let (limit, offset) = (page.limit().to_string(), page.offset().to_string());
        let space_filter = match space {
            Space::Personal => "is.null".to_owned(),
            Space::Organization(id) => format!("eq.{id}"),
        };
        let query = [
            ("select", "*"),
            ("organization_id", space_filter.as_str()),
            ("order", NEWEST_FIRST),
            ("limit", &limit),
            ("offset", &offset),
        ];
        let response = self.send(Kind::Read, &token, || self.request(Method::GET, &token).query(&query)).await?;
        rows(response, &token).await
    }

    pub async fn get_todo(&self, user: &UserIdentity, id: Uuid) -> Result<Todo, InsforgeError> {
        let token = self.token(user)?;
        let filter = eq(id);
        let query = [("select", "*"), ("id", filter.as_str())];
        let response = self.send(Kind::Read, &token, || self.request(Method::GET, &token).query(&query)).await?;
        first_row(response, &token).await
    }

    /// Creates a todo with an id chosen here: see [`InsforgeClient::create_todo_with_id`].
    pub async fn create_todo(&self, user: &UserIdentity, title: &Title, space: &Space) -> Result<Todo, InsforgeError> {
        self.create_todo_with_id(user, Uuid::new_v4(), title, space).await
    }

    /// Creates the todo `id`. The id is chosen before the insert is sent, so that the insert is the same every time
    /// it is sent: InsForge's proxy sends a request again when a kept-alive connection to PostgREST was reset, and a
    /// caller whose answer was lost sends the create again with the same id. Either repeat meets the row the first
    /// made (409, unique violation) instead of making a second todo, and is answered with that row when it is the
    /// one this create would have made: this user's, with this title, in this space. Any other row holding the id
    /// is [`InsforgeError::IdTaken`], which tells nothing about that row.
    pub async fn create_todo_with_id(
        &self,
        user: &UserIdentity,
        id: Uuid,
        title: &Title,
        space: &Space,
    ) -> Result<Todo, InsforgeError> {
        let token = self.token(user)?;
        // `user_id` is not sent: the column defaults to requesting_user_id(), the `sub` of this very token.
        let body = [NewTodo { id, title: title.as_str(), organization_id: space.organization_id() }];
        let sent = self
            .send(Kind::Write, &token, || self.request(Method::POST, &token).query(&[("select", "*")]).json(&body))
            .await;
        let response = match sent {
            Err(InsforgeError::IdExists) => return self.created_before(user, id, title, space).await,
            other => other.map_err(unconfirmed)?,
        };
        match first_row(response, &token).await {
            Err(InsforgeError::NotFound) => Err(InsforgeError::Upstream {
                status: StatusCode::CREATED.as_u16(),
                message: "InsForge reported the todo created but returned no row".to_owned(),
            }),
            other => other.map_err(unconfirmed),
        }
    }

    /// The todo an earlier sending of this create made, when the row holding `id` is that todo.
    async fn created_before(
        &self,
        user: &UserIdentity,
        id: Uuid,
        title: &Title,
        space: &Space,
    ) -> Result<Todo, InsforgeError> {
        match self.get_todo(user, id).await {
            Ok(todo)
                if todo.user_id == user.id
                    && todo.organization_id.as_deref() == space.organization_id()
                    && todo.title == title.as_str() =>
            {
                tracing::info!(todo_id = %id, "the create was sent again; the todo the first made is kept");
                Ok(todo)
            }
            // Hidden by RLS, or visible but not this create's (another member's shared todo, or one of the user's own
            // with other content): the id is taken, and nothing about the row is passed on.
            Ok(_) | Err(InsforgeError::NotFound) => Err(InsforgeError::IdTaken),
            // The row exists but whose it is could not be read: the create's outcome is as unknown as after a timeout.
            Err(other) => Err(unconfirmed(other)),
        }
    }

    /// Applies what in `patch` differs from the todo as stored, and only that: a PATCH sent again (a retry, a
    /// double click) or one that asks for what already is changes nothing, so it neither moves `updated_at` nor
    /// makes an Audit Log event.
    ///
    /// - A new completion state alone (the toggle, the common case) is one request, filtered on the state
    ///   differing: a compare-and-set, so of two toggles at once (a double click) one changes the todo and the other
    ///   finds nothing to change. An empty answer is told apart by reading the todo (as asked already; or changed
    ///   meanwhile, then sent again as asked; or hidden or refused, 404 as before). The price: when InsForge's proxy
    ///   sends the toggle twice (docs/insforge.md §3.1), the answer is its repeat's, which finds the todo as asked,
    ///   and the toggle is answered as a no-op: 200 with the todo as asked, but no Audit Log event. Telling that
    ///   repeat from a second click would take a marker of the write in the row.
    /// - With a title, the todo is read first and only what differs is sent: a filter on the title would put the
    ///   user's text in the URL, which proxies and InsForge log. When only the completion state differs (a client
    ///   that sends the whole todo), that is the toggle's compare-and-set above.
    /// - A write whose answer was lost (`WriteUnconfirmed`) is looked at again: if the todo is now as asked, that
    ///   is the answer, and what was sent counts as the change. A retry would find nothing left to change and no
    ///   Audit Log event would ever say it happened.
    pub async fn update_todo(
        &self,
        user: &UserIdentity,
        id: Uuid,
        patch: &TodoPatch,
    ) -> Result<Updated, InsforgeError> {
        if patch.is_empty() {
            return Err(InsforgeError::InvalidInput { message: "Nothing to change.".to_owned() });
        }
        let (sent, outcome) = if patch.title.is_some() {
            let current = self.get_todo(user, id).await?;
            let changed = patch.beyond(&current);
            if changed.is_empty() {
                return Ok(Updated { todo: current, changed });
            }
            let outcome = if changed.title.is_some() {
                self.patch_todo(user, id, &changed, None).await.map(|todo| Updated { todo, changed: changed.clone() })
            } else {
                self.update_completion(user, id, &changed).await
            };
            (changed, outcome)
        } else {
            (patch.clone(), self.update_completion(user, id, patch).await)
        };
        match outcome {
            Err(lost @ InsforgeError::WriteUnconfirmed { .. }) => match self.get_todo(user, id).await {
                Ok(current) if sent.beyond(&current).is_empty() => Ok(Updated { todo: current, changed: sent }),
                _ => Err(lost),
            },
            other => other,
        }
    }

    /// `patch` (a completion state alone) where the todo's state differs.
    async fn update_completion(
        &self,
        user: &UserIdentity,
        id: Uuid,
        patch: &TodoPatch,
    ) -> Result<Updated, InsforgeError> {
        let differs = patch.is_complete.map(|done| format!("neq.{done}"));
        let filter = differs.as_deref().map(|differs| ("is_complete", differs));
        match self.patch_todo(user, id, patch, filter).await {
            Ok(todo) => Ok(Updated { todo, changed: patch.clone() }),
            // Nothing updated: already as asked, changed meanwhile, or hidden or refused by RLS.
            Err(InsforgeError::NotFound) => match self.get_todo(user, id).await {
                Ok(current) if patch.beyond(&current).is_empty() => {
                    Ok(Updated { todo: current, changed: TodoPatch::default() })
                }
                // Visible and not as asked: sent again without the filter, which only the update policy can refuse
                // (then 404, as the update alone would have answered).
                Ok(_) => {
                    self.patch_todo(user, id, patch, None).await.map(|todo| Updated { todo, changed: patch.clone() })
                }
                Err(other) => Err(other),
            },
            Err(other) => Err(other),
        }
    }

    /// `PATCH …/todos?id=eq.<id>` (and `filter`, when given) with `patch`, answered with the updated row.
    async fn patch_todo(
        &self,
        user: &UserIdentity,
        id: Uuid,
        patch: &TodoPatch,
        filter: Option<(&str, &str)>,
    ) -> Result<Todo, InsforgeError> {
        let token = self.token(user)?;
        let by_id = eq(id);
        let mut query = vec![("select", "*"), ("id", by_id.as_str())];
        query.extend(filter);
        let response = self
            .send(Kind::Write, &token, || self.request(Method::PATCH, &token).query(&query).json(patch))
            .await
            .map_err(unconfirmed)?;
        first_row(response, &token).await.map_err(unconfirmed)
    }

    /// Deletes the todo and returns it as it was.
    ///
    /// The todo is read first. InsForge's proxy may send the DELETE twice (docs/insforge.md §3.1), and the repeat,
    /// which deletes nothing, is the answer we get; or the answer may be lost (`WriteUnconfirmed`). Having seen the
    /// todo, a delete that then finds it gone was this request's (or one made at the same moment) and is answered as
    /// done, so the caller is not told 404 or "may have been saved" for a delete that happened, and its Audit Log
    /// event is written. Wrong in one case: a user who lost sight of the todo between the read and the delete (their
    /// membership ended at that moment) is answered 204, and the deletion is audited, though the row stays. Telling
    /// "gone" from "hidden" would take a look past RLS.
    pub async fn delete_todo(&self, user: &UserIdentity, id: Uuid) -> Result<Todo, InsforgeError> {
        let before = self.get_todo(user, id).await?;
        let token = self.token(user)?;
        let filter = eq(id);
        // Asking for the deleted rows back is how "deleted" is told apart from "refused by RLS".
        let query = [("select", "*"), ("id", filter.as_str())];
        let answer = match self.send(Kind::Write, &token, || self.request(Method::DELETE, &token).query(&query)).await {
            Ok(response) => rows::<Todo>(response, &token).await,
            Err(error) => Err(error),
        };
        let deleted = match answer.map_err(unconfirmed) {
            Ok(deleted) => deleted,
            // Looked at again, as an update is: gone now, it was this delete.
            Err(lost @ InsforgeError::WriteUnconfirmed { .. }) => {
                return match self.get_todo(user, id).await {
                    Err(InsforgeError::NotFound) => Ok(before),
                    _ => Err(lost),
                };
            }
            Err(other) => return Err(other),
        };
        if let Some(todo) = deleted.into_iter().next() {
            return Ok(todo);
        }
        // Nothing deleted: the user sees the todo but may not delete it (an organization todo of someone else, for
        // a member who is not an admin), or it is gone already. Asking again tells them apart; the database decided.
        match self.get_todo(user, id).await {
            Ok(_) => Err(InsforgeError::NotDeletable),
            Err(InsforgeError::NotFound) => Ok(before),
            Err(other) => Err(other),
        }
    }

    /// Can InsForge serve todos? A real records call (`GET …/records/todos?select=id&limit=1`) with a token minted
    /// for [`READINESS_PROBE_USER`]: it takes the whole path a request takes — the token and `INSFORGE_JWT_SECRET`,
    /// PostgREST, PostgreSQL, the table, its grants and its policies — and, since nobody has that id, RLS gives it
    /// no rows, and the answer must read as rows. InsForge's own `GET /api/health` touches none of these (a
    /// constant answer from its Node process, `docs/insforge.md` §5.1), so it would call an InsForge ready whose
    /// database is down. Not retried, so a readiness probe sees the truth at once.
    pub async fn health(&self) -> Result<(), InsforgeError> {
        let token = self.token(&UserIdentity::new(READINESS_PROBE_USER, None))?;
        let probe = self.request(Method::GET, &token).query(&[("select", "id"), ("limit", "1")]).send();
        let response = outbound::observed(Upstream::Insforge, probe).await.map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            // The answer must be the records API's (a JSON array), not any 200: an `INSFORGE_URL` that points at a
            // web front end answering `index.html` for every path would otherwise be "ready" while every todo
            // request fails.
            return rows::<serde::de::IgnoredAny>(response, &token).await.map(drop);
        }
        let body = response.text().await.unwrap_or_default();
        Err(status_error(Kind::Read, status, &body, &token))
    }

    fn token(&self, user: &UserIdentity) -> Result<String, InsforgeError> {
        Ok(self.inner.minter.mint(user)?)
    }

    fn request(&self, method: Method, token: &str) -> RequestBuilder {
        let builder = self.inner.http.request(method.clone(), self.inner.todos_url.clone()).bearer_auth(token);
        if method == Method::GET { builder } else { builder.header("Prefer", "return=representation") }
    }

    /// Sends with the retry rule for `kind`, and turns every non-success status into an error.
    async fn send(
        &self,
        kind: Kind,
        token: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, InsforgeError> {
        let attempt = || outbound::observed(Upstream::Insforge, build().send());
        let response = send_with_retry_rule(kind, attempt).await.map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = match response.text().await {
            Ok(body) => body,
            Err(e) => return Err(transport_error(e)),
        };
        Err(status_error(kind, status, &body, token))
    }
}

/// One attempt, or two for a read whose first attempt never connected.
async fn send_with_retry_rule<F, Fut>(kind: Kind, mut attempt: F) -> Result<Response, reqwest::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Response, reqwest::Error>>,
{
    match attempt().await {
        // A connect *timeout* is not retried: it already cost the whole connect timeout once.
        Err(e) if kind == Kind::Read && e.is_connect() && !e.is_timeout() => {
            tracing::debug!(error = %e, "retrying an InsForge read once after a connection failure");
            attempt().await
        }
        other => other,
    }
}

/// A write's timeout or broken connection as what it means: the write may have been applied. (A failure to connect
/// stays what it is: nothing reached InsForge.)
fn unconfirmed(error: InsforgeError) -> InsforgeError {
    match error {
        InsforgeError::Timeout => InsforgeError::WriteUnconfirmed { timed_out: true },
        InsforgeError::Transport => InsforgeError::WriteUnconfirmed { timed_out: false },
        other => other,
    }
}

/// A PostgREST equality filter on a UUID. The value is then percent-encoded by the query serializer.
fn eq(id: Uuid) -> String {
    format!("eq.{id}")
}

async fn rows<T: DeserializeOwned>(response: Response, token: &str) -> Result<Vec<T>, InsforgeError> {
    let status = response.status();
    if status == StatusCode::NO_CONTENT {
        return Err(InsforgeError::Upstream {
            status: status.as_u16(),
            message: "expected the affected rows (Prefer: return=representation) but the body was empty".to_owned(),
        });
    }
    let body = response.bytes().await.map_err(transport_error)?;
    serde_json::from_slice(&body).map_err(|e| InsforgeError::Upstream {
        status: status.as_u16(),
        message: scrub(&format!("malformed response body: {e}"), token),
    })
}

async fn first_row(response: Response, token: &str) -> Result<Todo, InsforgeError> {
    rows::<Todo>(response, token).await?.into_iter().next().ok_or(InsforgeError::NotFound)
}

fn transport_error(error: reqwest::Error) -> InsforgeError {
    // The message, with the URL's origin only (filters are user data), goes to the log; the kind decides the answer.
    let message = outbound::message_without_url(&error);
    match Failure::of(&error) {
        Failure::Timeout => {
            tracing::warn!(error = %message, "InsForge request timed out");
            InsforgeError::Timeout
        }
        Failure::Connect => {
            tracing::warn!(error = %message, "could not connect to InsForge");
            InsforgeError::Connect
        }
        Failure::Decode | Failure::Broken => {
            tracing::warn!(error = %message, "InsForge request failed");
            InsforgeError::Transport
        }
    }
}

/// The error an answer that is not a success stands for. `kind` matters for InsForge's own 500s: see there.
fn status_error(kind: Kind, status: StatusCode, body: &str, token: &str) -> InsforgeError {
    let body = ErrorBody::parse(body, token);
    let message = body.summary();
    match status.as_u16() {
        // PostgREST answers 400 for every SQLSTATE its table does not list and for its own request errors
        // (`PGRST100`, `PGRST102`, `PGRST204`, `42703`: postgrest `src/PostgREST/Error.hs`). authbridge validates
        // titles and builds every query itself, so only a data error — a check, not-null or length rule the database
        // enforces — is about the input; any other 400 is schema drift (a stale schema cache makes every create
        // `PGRST204`) or a bug here, and is the upstream's failure below.
        400 if body.is_data_error() => InsforgeError::InvalidInput { message },
        422 => InsforgeError::InvalidInput { message },
        401 => InsforgeError::Unauthorized { message },
        403 => InsforgeError::Forbidden { code: body.code.or(body.insforge_error), message: body.message },
        // PostgREST's answer for a table it does not know, passed through by InsForge (`{}` from PostgREST 12,
        // `PGRST205` from 13 on), or InsForge's own for an unknown route: a deployment problem, never a missing todo.
        404 => InsforgeError::Upstream {
            status: 404,
            message: format!(
                "no such table or route (have the migrations been applied? is INSFORGE_URL right?): {message}"
            ),
        },
        // PostgREST answers 409 for a unique (`23505`) and a foreign key (`23503`) violation. The id is taken only
        // when the unique constraint is the primary key: `duplicate key value violates unique constraint
        // "todos_pkey"` (the constraint's name stays as it is in every language PostgreSQL answers in).
        409 if body.code.as_deref() == Some("23505") && body.message.contains(TODOS_PRIMARY_KEY) => {
            InsforgeError::IdExists
        }
        // InsForge gives up on PostgREST after 10 s and answers 500 with axios's own words for it
        // (`{"error":"INTERNAL_ERROR","message":"timeout of 10000ms exceeded"}`): a timeout, as ours would be.
        500 if is_proxy_timeout(&message) => {
            tracing::warn!(error = %message, "InsForge timed out waiting for its database API");
            InsforgeError::Timeout
        }
        // InsForge's own 500 for a write is its proxy's network error passed on (`postgrest-proxy.service.ts`: a
        // write is not retried after ECONNRESET, EPIPE or an error without a code, because the connection "can also
        // arrive mid-response after a write already committed"; `middlewares/error.ts` answers the error's message,
        // e.g. "socket hang up"). The write may have been saved, unless the connection to PostgREST never opened.
        500 if kind == Kind::Write
            && body.is_insforge_internal_error()
            && !names_unopened_connection(&body.message) =>
        {
            tracing::warn!(error = %message, "InsForge lost its connection to its database API during a write");
            InsforgeError::WriteUnconfirmed { timed_out: false }
        }
        // A gateway in front of InsForge (a load balancer, a CDN) answering for it, in neither of InsForge's shapes:
        // 504, it forwarded the write and stopped waiting; 502, the answer broke on the way (or never came). Which,
        // it cannot say, so the write may have been saved: "try again" could make it twice.
        502 | 504 if kind == Kind::Write && body.code.is_none() && body.insforge_error.is_none() => {
            tracing::warn!(error = %message, status = status.as_u16(), "a gateway in front of InsForge failed during a write");
            InsforgeError::WriteUnconfirmed { timed_out: status == 504 }
        }
        status => InsforgeError::Upstream { status, message },
    }
}

/// The error codes of a connection that never opened, which InsForge's proxy names in its message
/// (`CONNECTION_NOT_ESTABLISHED_CODES` in `postgrest-proxy.service.ts`): nothing reached PostgREST.
const UNOPENED_CONNECTION_CODES: [&str; 5] = ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"];

/// Node's messages put the code as a word of its own (`connect ECONNREFUSED 127.0.0.1:5430`, `getaddrinfo
/// ENOTFOUND postgrest`).
fn names_unopened_connection(message: &str) -> bool {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| UNOPENED_CONNECTION_CODES.contains(&word))
}

/// axios's timeout message (`timeout of <n>ms exceeded`), as InsForge's proxy passes it on.
fn is_proxy_timeout(message: &str) -> bool {
    message.split_once("timeout of ").is_some_and(|(_, rest)| {
        rest.strip_suffix("ms exceeded").is_some_and(|ms| !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// An error answer's body, in either of its shapes (docs/insforge.md §3): PostgREST's
/// `{"code","details","hint","message"}`, passed through by InsForge, or InsForge's own
/// `{"error","message","statusCode"}`. Anything else (a proxy's HTML page, an empty body) is kept as text.
#[derive(Debug, Default)]
struct ErrorBody {
    /// PostgREST's `code`: a PostgreSQL SQLSTATE (`23514`) or one of PostgREST's own (`PGRST204`).
    code: Option<String>,
    /// InsForge's `error`, a name from its `ERROR_CODES` (`INTERNAL_ERROR`), in its own shape only.
    insforge_error: Option<String>,
    /// The `message`, on one line and with the token scrubbed out; else the body itself, cut short.
    message: String,
}

impl ErrorBody {
    fn parse(body: &str, token: &str) -> Self {
        if let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(body) {
            let text = |key: &str| object.get(key).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
            if let Some(message) = text("message") {
                return ErrorBody {
                    code: text("code").map(str::to_owned),
                    insforge_error: text("error").map(str::to_owned),
                    message: scrub(&one_line(message), token),
                };
            }
        }
        let body = one_line(body);
        let message = if body.is_empty() {
            "(empty body)".to_owned()
        } else if body.chars().count() > MAX_MESSAGE_CHARS {
            format!("{}…", body.chars().take(MAX_MESSAGE_CHARS).collect::<String>())
        } else {
            body
        };
        ErrorBody { message: scrub(&message, token), ..ErrorBody::default() }
    }

    /// InsForge's answer for an error that is not an HTTP answer from PostgREST (`middlewares/error.ts`'s default:
    /// `INTERNAL_ERROR` with the error's message), as opposed to a PostgREST body, which has a `code`.
    fn is_insforge_internal_error(&self) -> bool {
        self.code.is_none() && self.insforge_error.as_deref() == Some("INTERNAL_ERROR")
    }

    /// A PostgreSQL data exception (SQLSTATE class 22, e.g. `22001` value too long) or integrity constraint
    /// violation (class 23, e.g. `23514` check, `23502` not null).
    fn is_data_error(&self) -> bool {
        self.code.as_deref().is_some_and(|code| code.len() == 5 && (code.starts_with("22") || code.starts_with("23")))
    }

    /// For the logs: the message, prefixed by its code (PostgREST's, else InsForge's name).
    fn summary(&self) -> String {
        match self.code.as_deref().or(self.insforge_error.as_deref()) {
            Some(code) => format!("{code}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A server that echoes the request back must not get the token into a log through an error message.
fn scrub(message: &str, token: &str) -> String {
    if token.is_empty() { message.to_owned() } else { message.replace(token, "[token]") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.e30.sig";

    fn summary(body: &str) -> String {
        ErrorBody::parse(body, TOKEN).summary()
    }

    /// A gateway's 502 or 504 to a write (its own page, not an InsForge or PostgREST body) may hide a saved write;
    /// to a read it is a plain failure, and InsForge's own 502 keeps its meaning.
    #[test]
    fn a_gateways_502_or_504_to_a_write_is_unconfirmed() {
        let page = "<html><body><h1>502 Bad Gateway</h1></body></html>";
        let write = |status| status_error(Kind::Write, status, page, TOKEN);
        assert!(matches!(write(StatusCode::BAD_GATEWAY), InsforgeError::WriteUnconfirmed { timed_out: false }));
        assert!(matches!(write(StatusCode::GATEWAY_TIMEOUT), InsforgeError::WriteUnconfirmed { timed_out: true }));
        let read = status_error(Kind::Read, StatusCode::BAD_GATEWAY, page, TOKEN);
        assert!(matches!(read, InsforgeError::Upstream { status: 502, .. }));
        let insforge = r#"{"error":"BAD_GATEWAY","message":"upstream","statusCode":502}"#;
        let own = status_error(Kind::Write, StatusCode::BAD_GATEWAY, insforge, TOKEN);
        assert!(matches!(own, InsforgeError::Upstream { status: 502, .. }));
    }

    #[test]
    fn insforges_own_timeout_is_a_timeout_and_other_500s_are_not() {
        let body = r#"{"error":"INTERNAL_ERROR","message":"timeout of 10000ms exceeded","statusCode":500}"#;
        assert!(matches!(
            status_error(Kind::Read, StatusCode::INTERNAL_SERVER_ERROR, body, TOKEN),
            InsforgeError::Timeout
        ));
        for other in [
            r#"{"error":"INTERNAL_ERROR","message":"connect ECONNREFUSED 127.0.0.1:5430"}"#,
            r#"{"error":"INTERNAL_ERROR","message":"timeout of ms exceeded"}"#,
            r#"{"code":"57014","message":"canceling statement due to statement timeout"}"#,
        ] {
            let error = status_error(Kind::Read, StatusCode::INTERNAL_SERVER_ERROR, other, TOKEN);
            assert!(matches!(error, InsforgeError::Upstream { status: 500, .. }), "{other}: {error:?}");
        }
        let elsewhere = status_error(Kind::Read, StatusCode::BAD_GATEWAY, body, TOKEN);
        assert!(matches!(elsewhere, InsforgeError::Upstream { status: 502, .. }), "only InsForge's own 500");
    }

    /// InsForge answers a write whose connection to PostgREST broke with its own 500 and the network error's
    /// message; the write may have committed. Only a connection that never opened proves it did not.
    #[test]
    fn insforges_own_500_for_a_write_is_unconfirmed_unless_the_connection_never_opened() {
        let insforge_500 =
            |message: &str| format!(r#"{{"error":"INTERNAL_ERROR","message":"{message}","statusCode":500}}"#);
        for lost in ["socket hang up", "read ECONNRESET", "write EPIPE", "aborted"] {
            let error = status_error(Kind::Write, StatusCode::INTERNAL_SERVER_ERROR, &insforge_500(lost), TOKEN);
            assert!(matches!(error, InsforgeError::WriteUnconfirmed { timed_out: false }), "{lost}: {error:?}");
            // A read whose answer was lost changed nothing: an ordinary failure.
            let error = status_error(Kind::Read, StatusCode::INTERNAL_SERVER_ERROR, &insforge_500(lost), TOKEN);
            assert!(matches!(error, InsforgeError::Upstream { status: 500, .. }), "{lost}: {error:?}");
        }
        for never_opened in [
            "connect ECONNREFUSED 127.0.0.1:5430",
            "getaddrinfo ENOTFOUND postgrest",
            "getaddrinfo EAI_AGAIN postgrest",
            "connect EHOSTUNREACH 10.0.0.7:3000",
            "connect ENETUNREACH 10.0.0.7:3000",
        ] {
            let error =
                status_error(Kind::Write, StatusCode::INTERNAL_SERVER_ERROR, &insforge_500(never_opened), TOKEN);
            assert!(matches!(error, InsforgeError::Upstream { status: 500, .. }), "{never_opened}: {error:?}");
        }
        // A PostgREST error body is PostgreSQL's answer: the statement failed, and its transaction with it. And an
        // InsForge error by another name than INTERNAL_ERROR is InsForge's own refusal, not a lost connection.
        for answered in [
            r#"{"code":"XX000","details":null,"hint":null,"message":"socket hang up"}"#,
            r#"{"error":"DATABASE_VALIDATION_ERROR","message":"socket hang up","statusCode":500}"#,
        ] {
            let error = status_error(Kind::Write, StatusCode::INTERNAL_SERVER_ERROR, answered, TOKEN);
            assert!(matches!(error, InsforgeError::Upstream { status: 500, .. }), "{answered}: {error:?}");
        }
    }

    /// Only PostgreSQL's data errors are the input's fault; PostgREST's other 400s (its own request errors, an
    /// unknown column) and InsForge's own mean authbridge and the database disagree: an upstream failure.
    #[test]
    fn only_a_data_error_in_a_400_is_refused_input() {
        let postgrest = |code: &str| format!(r#"{{"code":"{code}","details":null,"hint":null,"message":"m"}}"#);
        for code in ["23514", "23502", "22001", "22P02"] {
            let error = status_error(Kind::Write, StatusCode::BAD_REQUEST, &postgrest(code), TOKEN);
            assert!(
                matches!(&error, InsforgeError::InvalidInput { message } if message.starts_with(code)),
                "{error:?}"
            );
        }
        for code in ["PGRST204", "PGRST100", "PGRST102", "42703", "P0001", "2200"] {
            let error = status_error(Kind::Write, StatusCode::BAD_REQUEST, &postgrest(code), TOKEN);
            assert!(
                matches!(&error, InsforgeError::Upstream { status: 400, message } if message.starts_with(code)),
                "{error:?}"
            );
        }
        let insforge = r#"{"error":"INVALID_INPUT","message":"Unexpected token","statusCode":400}"#;
        let error = status_error(Kind::Write, StatusCode::BAD_REQUEST, insforge, TOKEN);
        assert!(matches!(error, InsforgeError::Upstream { status: 400, .. }), "{error:?}");
    }

    /// A 409 is the create's id taken only for a unique violation of the primary key.
    #[test]
    fn only_a_unique_violation_of_the_primary_key_is_an_existing_id() {
        let conflict = |code: &str, message: &str, details: &str| {
            let body = serde_json::json!({ "code": code, "details": details, "hint": null, "message": message });
            status_error(Kind::Write, StatusCode::CONFLICT, &body.to_string(), TOKEN)
        };
        let pkey = r#"duplicate key value violates unique constraint "todos_pkey""#;
        let error = conflict("23505", pkey, "Key (id)=(0b6f3a9e-4c1d-4e7a-9f2b-8d5c6e7f8a9b) already exists.");
        assert!(matches!(error, InsforgeError::IdExists), "{error:?}");
        let french = "la valeur d'une clé dupliquée rompt la contrainte unique « todos_pkey »";
        assert!(matches!(conflict("23505", french, ""), InsforgeError::IdExists));
        for (code, message, details) in [
            (
                "23505",
                r#"duplicate key value violates unique constraint "todos_title_key""#,
                "Key (title)=(x) already exists.",
            ),
            (
                "23503",
                r#"insert or update on table "todos" violates foreign key constraint "todos_organization_id_fkey""#,
                "Key (organization_id)=(org_1) is not present in table \"organizations\".",
            ),
            ("PGRST999", pkey, ""),
        ] {
            let error = conflict(code, message, details);
            assert!(matches!(error, InsforgeError::Upstream { status: 409, .. }), "{code}: {error:?}");
        }
        let insforge = r#"{"error":"ALREADY_EXISTS","message":"todos_pkey","statusCode":409}"#;
        let error = status_error(Kind::Write, StatusCode::CONFLICT, insforge, TOKEN);
        assert!(matches!(error, InsforgeError::Upstream { status: 409, .. }), "{error:?}");
    }

    async fn live_server() -> (Url, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "[]"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        (url, hits, task)
    }

    /// Bound but never listened on (so connections are refused), and kept bound so that no server another test
    /// starts can be handed the port.
    fn closed_port_url() -> Url {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let url = Url::parse(&format!("http://{}/", socket.local_addr().expect("addr"))).expect("url");
        std::mem::forget(socket);
        url
    }

    #[tokio::test]
    async fn a_read_is_retried_once_after_a_connection_failure() {
        let (live, hits, _server) = live_server().await;
        let dead = closed_port_url();
        let http = reqwest::Client::new();
        let attempts = AtomicUsize::new(0);
        // First attempt: a refused connection (a real reqwest connect error); second: a live server.
        let response = send_with_retry_rule(Kind::Read, || {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            http.get(if n == 0 { dead.clone() } else { live.clone() }).send()
        })
        .await
        .expect("the retry reaches the live server");
        assert!(response.status().is_success());
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_read_is_not_retried_more_than_once_and_a_write_never() {
        let dead = closed_port_url();
        let http = reqwest::Client::new();

        let reads = AtomicUsize::new(0);
        let error = send_with_retry_rule(Kind::Read, || {
            reads.fetch_add(1, Ordering::SeqCst);
            http.get(dead.clone()).send()
        })
        .await
        .expect_err("nothing listens");
        assert!(error.is_connect());
        assert_eq!(reads.load(Ordering::SeqCst), 2);

        let writes = AtomicUsize::new(0);
        let error = send_with_retry_rule(Kind::Write, || {
            writes.fetch_add(1, Ordering::SeqCst);
            http.post(dead.clone()).send()
        })
        .await
        .expect_err("nothing listens");
        assert!(error.is_connect());
        assert_eq!(writes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn api_paths_keep_a_base_path_prefix() {
        let base = Url::parse("https://example.com/insforge").expect("url");
        assert_eq!(
            outbound::endpoint(&base, &["api", "health"]).expect("url").as_str(),
            "https://example.com/insforge/api/health"
        );
        let base = Url::parse("https://example.com/").expect("url");
        assert_eq!(
            outbound::endpoint(&base, &["api", "database", "records", "todos"]).expect("url").as_str(),
            "https://example.com/api/database/records/todos"
        );
    }

    #[test]
    fn error_messages_are_one_line_and_keep_the_upstream_code() {
        assert_eq!(
            summary(r#"{"code":"42501","details":null,"hint":null,"message":"permission denied\nfor table todos"}"#),
            "42501: permission denied for table todos"
        );
        assert_eq!(
            summary(r#"{"error":"AUTH_UNAUTHORIZED","message":"Invalid token","statusCode":401}"#),
            "AUTH_UNAUTHORIZED: Invalid token"
        );
        assert_eq!(summary("<html>\n<b>Bad gateway</b></html>"), "<html> <b>Bad gateway</b></html>");
        assert_eq!(summary(""), "(empty body)");
        assert_eq!(summary(&"x".repeat(1000)).chars().count(), MAX_MESSAGE_CHARS + 1);
        // A body of exactly the limit is whole: nothing was cut, so no "…" says it was.
        assert_eq!(summary(&"é".repeat(MAX_MESSAGE_CHARS)), "é".repeat(MAX_MESSAGE_CHARS));
        assert_eq!(summary(&"é".repeat(MAX_MESSAGE_CHARS + 1)), format!("{}…", "é".repeat(MAX_MESSAGE_CHARS)));
    }
}
