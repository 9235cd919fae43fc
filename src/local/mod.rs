//! What runs on a developer's machine in place of the real services, for the tests and `authbridge demo`.

pub mod insforge;
pub mod postgres;
pub mod workos;

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use crate::config::{Config, InsforgeConfig, Secret, ServerConfig, SessionConfig, WorkosConfig};
use insforge::InsforgeStandIn;
use workos::WorkosStandIn;

/// The configuration of an app wired to the stand-ins: what `authbridge demo` runs and what the tests start from
/// (they then shorten timeouts as they need). Everything else is the production default.
pub fn app_config(
    bind_addr: SocketAddr,
    app_url: Url,
    insforge: &InsforgeStandIn,
    jwt_secret: Secret,
    workos: &WorkosStandIn,
    cookie_password: Secret,
) -> Result<Config, url::ParseError> {
    let redirect_uri = app_url.join("/callback")?;
    Ok(Config {
        server: ServerConfig {
            bind_addr,
            app_url,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(5),
            max_connections: 1024,
        },
        insforge: InsforgeConfig {
            url: insforge.url(),
            jwt_secret,
            token_ttl: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        },
        workos: WorkosConfig {
            api_key: workos.api_key().clone(),
            client_id: workos.client_id().to_owned(),
            redirect_uri,
            api_base_url: workos.base_url(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        },
        session: SessionConfig { cookie_password, previous_cookie_password: None, secure_cookies: false },
    })
}
