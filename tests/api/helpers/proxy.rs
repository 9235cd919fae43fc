//! A TCP proxy a test can cut: the app reaches its database through it, and `cut()` stages an outage (open
//! connections dropped, new ones refused) that `restore()` ends, or hold (`hold()`: new connections accepted but
//! left unanswered, a database that is slow to come up) until `release()`. The database itself never stops, so the
//! other tests sharing its cluster are not disturbed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct TcpProxy {
    port: u16,
    up: Arc<AtomicBool>,
    /// `true` while new connections wait before being relayed.
    held: tokio::sync::watch::Sender<bool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (accept_up, accept_connections) = (Arc::clone(&up), Arc::clone(&connections));
        let (held, released) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut released = released.clone();
                let relay = tokio::spawn(async move {
                    if released.wait_for(|held| !held).await.is_err() {
                        return;
                    }
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut open = accept_connections.lock().expect("connections");
                open.retain(|handle| !handle.is_finished());
                open.push(relay);
            }
        });
        TcpProxy { port, up, held, connections, accept }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a test app reaches the local database at `database_url` by: through a new proxy in front of it when
    /// `through_proxy` (returned, for the test to cut), else directly.
    pub async fn database_url(database_url: &str, through_proxy: bool) -> (String, Option<TcpProxy>) {
        if !through_proxy {
            return (database_url.to_owned(), None);
        }
        let mut url = url::Url::parse(database_url).expect("a database URL");
        let upstream = SocketAddr::from(([127, 0, 0, 1], url.port().expect("a port")));
        let proxy = TcpProxy::start(upstream).await;
        url.set_port(Some(proxy.port())).expect("a port can be set");
        (url.to_string(), Some(proxy))
    }

    /// The outage: every open connection is dropped, and new ones are closed as soon as they are accepted.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for relay in self.connections.lock().expect("connections").drain(..) {
            relay.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// New connections are accepted, and then nothing happens on them until [`TcpProxy::release`].
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// The held connections, and every new one, reach the database.
    pub fn release(&self) {
        self.held.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for relay in self.connections.lock().map(|mut open| open.drain(..).collect::<Vec<_>>()).unwrap_or_default() {
            relay.abort();
        }
    }
}
