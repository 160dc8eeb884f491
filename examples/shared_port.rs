//! crosswire inside your own hyper service, on one port with your HTTP routes, authenticating
//! before the upgrade (the recommended way: a bad token gets a plain 401 and no WebSocket).
//!
//! Run with `cargo run --example shared_port`, then:
//! - `curl http://127.0.0.1:9000/health` → `ok`
//! - connect a WebSocket client to `ws://127.0.0.1:9000/ws?token=secret-7` → bound as socket id `7`
//! - `ws://127.0.0.1:9000/ws?token=wrong` → HTTP 401

use std::convert::Infallible;
use std::error::Error;

use bytes::Bytes;
use crosswire::ws::{unauthorized, Accept, WsAcceptor, WsConfig};
use crosswire::Node;
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type Body = Either<Empty<Bytes>, Full<Bytes>>;

/// Stands in for real token verification (JWT, session lookup...): `secret-<id>` is valid.
fn authenticate(request: &Request<Incoming>) -> Option<String> {
    let query = request.uri().query()?;
    let token = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))?;
    token
        .strip_prefix("secret-")
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

async fn route(
    acceptor: WsAcceptor,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let response = match request.uri().path() {
        "/health" => Response::new(Either::Right(Full::new(Bytes::from_static(b"ok")))),
        "/ws" => match authenticate(&request) {
            Some(id) => acceptor
                .accept_with(request, Accept::new().socket_id(id))
                .map(Either::Left),
            None => unauthorized().map(Either::Left),
        },
        _ => {
            let mut response =
                Response::new(Either::Right(Full::new(Bytes::from_static(b"not found"))));
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            response
        }
    };
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let node = Node::builder().build().await?;
    crosswire::demo::install(&node);
    let acceptor = WsAcceptor::new(node, WsConfig::default());

    let listener = TcpListener::bind("127.0.0.1:9000").await?;
    println!("HTTP and WebSocket on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| route(acceptor.clone(), request));
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
            if let Err(error) = served {
                eprintln!("connection error: {error}");
            }
        });
    }
}
