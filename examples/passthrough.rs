//! The yardstick of `scripts/bench`: a bare axum + reqwest pass-through with no authentication at all. It relays
//! `GET /api/todos` to the upstream's records API and, like authbridge, parses the rows into typed todos (RFC 3339
//! dates included) and serialises them again, so that the only difference the benchmark measures is the auth work.
//!
//! `passthrough <listen address> <upstream base URL>`; a benchmark tool, never deployed.

use std::net::SocketAddr;
use std::time::Duration;

use authbridge::todo::Todo;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

#[derive(Clone)]
struct Upstream {
    http: reqwest::Client,
    todos_url: String,
}

#[derive(Serialize)]
struct TodoList {
    todos: Vec<Todo>,
    limit: u32,
    offset: u32,
}

async fn list(State(upstream): State<Upstream>) -> Result<Json<TodoList>, StatusCode> {
    let query = [("select", "*"), ("order", "created_at.desc,id.desc"), ("limit", "50"), ("offset", "0")];
    let response = upstream.http.get(&upstream.todos_url).query(&query).send().await;
    let response = response.map_err(|_| StatusCode::BAD_GATEWAY)?;
    let body = response.bytes().await.map_err(|_| StatusCode::BAD_GATEWAY)?;
    let todos: Vec<Todo> = serde_json::from_slice(&body).map_err(|_| StatusCode::BAD_GATEWAY)?;
    Ok(Json(TodoList { todos, limit: 50, offset: 0 }))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: passthrough <listen address> <upstream base URL>";
    let addr: SocketAddr = args.next().ok_or(usage)?.parse().map_err(|e| format!("listen address: {e}"))?;
    let base = args.next().ok_or(usage)?;
    let http =
        authbridge::outbound::client(Duration::from_secs(2), Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let upstream = Upstream { http, todos_url: format!("{}/api/database/records/todos", base.trim_end_matches('/')) };
    let app = Router::new().route("/api/todos", get(list)).with_state(upstream);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
    // Ctrl-C (SIGINT) ends it cleanly, which is how scripts/bench stops it, also under valgrind.
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, app).with_graceful_shutdown(stop).await.map_err(|e| e.to_string())
}
