//! Reading and rewriting a browser's sealed session cookie, the way only the server can: to make its access token
//! expire now instead of sleeping, or to seal it with another key.

use authbridge::config::Secret;
use authbridge::session::seal::{Purpose, Sealer};
use authbridge::session::{SESSION_COOKIE, Session};

use super::app::COOKIE_PASSWORD;
use super::browser::Browser;

pub fn sealer(password: &str) -> Sealer {
    Sealer::new(&Secret::new(password), None).expect("keys derive")
}

/// The session the browser holds (sealed with the test password), joined from its chunks when needed.
pub fn read_session(browser: &Browser) -> Session {
    let sealed = sealed_value(browser);
    let opened = sealer(COOKIE_PASSWORD).open(Purpose::Session, &sealed).expect("the session cookie opens");
    serde_json::from_slice(&opened.plaintext).expect("the cookie holds a session")
}

pub fn sealed_value(browser: &Browser) -> String {
    if let Some(whole) = browser.cookie(SESSION_COOKIE) {
        return whole;
    }
    (0..).map_while(|i| browser.cookie(&format!("{SESSION_COOKIE}.{i}"))).collect::<String>()
}

/// Replaces the browser's session cookie with `session` sealed under `password`, as a single cookie.
pub fn write_session(browser: &Browser, session: &Session, password: &str) {
    for name in browser.cookie_names() {
        if name.starts_with(SESSION_COOKIE) {
            browser.remove_cookie(&name);
        }
    }
    let json = serde_json::to_vec(session).expect("session serialises");
    let sealed = sealer(password).seal(Purpose::Session, &json).expect("seal");
    browser.set_cookie(SESSION_COOKIE, &sealed);
}

/// The WorkOS session id (`sid`) inside the browser's access token.
pub fn session_id(browser: &Browser) -> String {
    #[derive(serde::Deserialize)]
    struct Sid {
        sid: String,
    }
    let token = read_session(browser).access_token;
    jsonwebtoken::dangerous::insecure_decode_claims::<Sid>(&token).expect("the access token carries a sid").sid
}
