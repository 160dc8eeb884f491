//! crosswire in an axum application: a page, a JSON health route and two WebSocket endpoints
//! on one port, one of them behind an axum middleware that authenticates before the upgrade.
//!
//! Run with `cargo run --features axum --example axum -- --port 3000`, then:
//! - <http://127.0.0.1:3000/>: a page that connects and sends `say`;
//! - `curl http://127.0.0.1:3000/health` → `{"status":"ok","connections":N,"clients":M}`;
//! - `ws://127.0.0.1:3000/ws?id=7`: the demo events (`crosswire::demo`), bound as `7`;
//! - `ws://127.0.0.1:3000/secure/ws?token=token-alice`: bound as `alice` before the upgrade
//!   completes; no token → HTTP 401, an unknown token → HTTP 403, and no WebSocket exists.

use std::collections::HashMap;
use std::error::Error;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use crosswire::axum::SocketId;
use crosswire::Node;
use serde_json::json;

/// The application's state: reachable from axum handlers (`State`) and, through a captured
/// clone, from crosswire's event handlers.
struct AppState {
    node: Node,
    /// Stands in for real token verification (sessions, JWTs...): token → user.
    tokens: HashMap<&'static str, &'static str>,
}

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>crosswire + axum</title>
<pre id="log"></pre>
<script>
const log = (line) => document.getElementById("log").textContent += line + "\n";
const ws = new WebSocket(`ws://${location.host}/ws?id=page`);
ws.onopen = () => { log("connected as page"); ws.send(JSON.stringify({ event: "say", payload: "hello", callbackId: "1" })); };
ws.onmessage = (m) => log("← " + m.data);
ws.onclose = (e) => log(`closed ${e.code} ${e.reason}`);
</script>
"#;

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let body = json!({
        "status": "ok",
        "connections": state.node.connection_count(),
        "clients": state.node.local_client_count(),
    });
    ([(CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// 401 without `?token=`, 403 with an unknown one; otherwise the token's user becomes the
/// connection's socket id.
async fn require_token(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, StatusCode> {
    let token = request
        .uri()
        .query()
        .and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        })
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let user = state.tokens.get(token).ok_or(StatusCode::FORBIDDEN)?;
    request
        .extensions_mut()
        .insert(SocketId((*user).to_owned()));
    Ok(next.run(request).await)
}

#[derive(Parser)]
#[command(name = "axum", args_override_self = true)]
struct Args {
    /// The port to listen on (127.0.0.1)
    #[arg(long, value_name = "P", default_value_t = 3000)]
    port: u16,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let Args { port } = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let node = Node::builder().build().await?;
    crosswire::demo::install(&node); // binds `?id=` unless the connection is already bound
    let state = Arc::new(AppState {
        node: node.clone(),
        tokens: HashMap::from([("token-alice", "alice"), ("token-bob", "bob")]),
    });

    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/health", get(health))
        .route("/ws", crosswire::axum::ws(node.clone()))
        .route(
            "/secure/ws",
            crosswire::axum::ws(node.clone())
                .layer(from_fn_with_state(state.clone(), require_token)),
        )
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("HTTP and WebSocket on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    node.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
