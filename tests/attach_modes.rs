//! Attaching crosswire to an application's own hyper server instead of `WsServer`: sharing a
//! port with plain HTTP routes, and authenticating the HTTP request before the upgrade (the
//! JavaScript package's "existing server" and "noServer" modes).

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use crosswire::ws::{unauthorized, Accept, WsAcceptor, WsConfig};
use crosswire::{system, Node};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::client::TestClient;
use support::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite;

/// The application's response body: its own content, or the acceptor's empty body.
type AppBody = Either<Full<Bytes>, Empty<Bytes>>;

/// Serves `route` with hyper 1 on a loopback port, upgrades enabled, until the test ends.
async fn serve_app<F>(route: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Response<AppBody> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(serve_on(listener, route, |stream| stream));
    addr
}

/// Serves `route` with hyper 1 on the connections of `listener`, each stream wrapped by `wrap`
/// (the application's own I/O layer), upgrades enabled.
async fn serve_on<F, W, IO>(listener: TcpListener, route: F, wrap: W)
where
    F: Fn(Request<Incoming>) -> Response<AppBody> + Send + Sync + 'static,
    W: Fn(TcpStream) -> IO,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let route = Arc::new(route);
    while let Ok((stream, _)) = listener.accept().await {
        let route = route.clone();
        let service = service_fn(move |request| {
            let response = route(request);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http1::Builder::new()
            .serve_connection(TokioIo::new(wrap(stream)), service)
            .with_upgrades();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<AppBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))));
    *response.status_mut() = status;
    response
}

/// A plain HTTP/1.1 GET over a raw TCP stream; returns the whole response text.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("response in time")
        .expect("read the response");
    String::from_utf8(response).expect("a UTF-8 response")
}

/// The value of query parameter `name`, undecoded (enough for these tests' tokens).
fn query_param<'a>(request: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

#[tokio::test]
async fn http_routes_and_websockets_share_one_port() {
    let node = Node::builder().build().await.expect("node builds");
    crosswire::demo::install(&node);
    let (tx, mut paths) = mpsc::unbounded_channel();
    node.on_system(system::Connection, move |socket| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(socket.request().path().to_owned());
        }
    });
    let acceptor = WsAcceptor::new(node.clone(), WsConfig::default());
    let addr = serve_app(
        move |request| match (request.method(), request.uri().path()) {
            (&Method::GET, "/health") => text(StatusCode::OK, "ok"),
            (_, "/ws") => acceptor.accept(request).map(Either::Right),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        },
    )
    .await;

    let health = http_get(addr, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok"), "{health}");

    let mut client = TestClient::connect(&format!("ws://{addr}/ws?id=1")).await;
    let (reply, pushes) = client.request("say", json!("over the shared port")).await;
    assert_eq!(reply["echo"], "over the shared port");
    assert!(pushes.is_empty());
    let path = timeout(WAIT, paths.recv())
        .await
        .expect("connection event in time")
        .expect("listener alive");
    assert_eq!(path, "ws");
    assert_eq!(node.connection_count(), 1);
    assert!(node.socket("1").is_some());

    // Plain HTTP keeps working while the WebSocket is open, on the same port.
    let health = http_get(addr, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    let missing = http_get(addr, "/nothing").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    // A plain request to the WebSocket route is told to upgrade.
    let plain = http_get(addr, "/ws").await;
    assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");

    node.broadcast()
        .emit("serverSay", &json!("to the shared-port client"))
        .await
        .expect("broadcast");
    assert_eq!(
        client.recv_push().await,
        ("serverSay".to_owned(), json!("to the shared-port client"))
    );
    assert_eq!(node.connection_count(), 1, "plain HTTP made no connection");
}

#[tokio::test]
async fn a_request_authenticated_before_the_upgrade_is_bound_from_the_start() {
    let node = Node::builder().build().await.expect("node builds");
    // What the connection handler sees: whether the id is already bound to this connection.
    let (tx, mut connected) = mpsc::unbounded_channel();
    let n = node.clone();
    node.on_system(system::Connection, move |socket| {
        let n = n.clone();
        let tx = tx.clone();
        async move {
            let bound_here = n
                .socket("user-7")
                .map(|bound| bound.same_connection(&socket));
            let welcome = n
                .to("user-7")
                .emit("welcome", &json!({ "msg": "hello user 7" }))
                .await
                .map(|delivery| delivery.local);
            let _ = tx.send((socket.socket_id(), bound_here, welcome));
        }
    });
    let acceptor = WsAcceptor::new(node.clone(), WsConfig::default());
    let addr = serve_app(move |request| {
        if request.uri().path() != "/ws" {
            return text(StatusCode::NOT_FOUND, "not found");
        }
        let response = match query_param(&request, "token") {
            Some("secret-7") => acceptor.accept_with(request, Accept::new().socket_id("user-7")),
            _ => unauthorized(),
        };
        response.map(Either::Right)
    })
    .await;

    // Rejected before any WebSocket exists: plain 401, no connection on the node.
    for url in [
        format!("ws://{addr}/ws?token=wrong"),
        format!("ws://{addr}/ws"),
    ] {
        match TestClient::try_connect(&url).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{url}");
            }
            Err(other) => panic!("{url}: expected HTTP 401, got {other}"),
            Ok(_) => panic!("{url}: connected without a valid token"),
        }
        assert_eq!(node.connection_count(), 0);
        assert!(connected.try_recv().is_err(), "no connection handler ran");
    }

    let mut client = TestClient::try_connect(&format!("ws://{addr}/ws?token=secret-7"))
        .await
        .expect("the right token connects");
    let (socket_id, bound_here, welcome) = timeout(WAIT, connected.recv())
        .await
        .expect("connection event in time")
        .expect("listener alive");
    assert_eq!(socket_id.as_deref(), Some("user-7"));
    assert_eq!(
        bound_here,
        Some(true),
        "bound before the connection handlers"
    );
    assert_eq!(welcome.expect("welcome push queued"), 1);
    assert_eq!(
        client.recv_push().await,
        ("welcome".to_owned(), json!({ "msg": "hello user 7" }))
    );

    node.to("user-7")
        .emit("news", &json!([1, 2, 3]))
        .await
        .expect("to_socket_id");
    assert_eq!(
        client.recv_push().await,
        ("news".to_owned(), json!([1, 2, 3]))
    );
    assert_eq!(node.connection_count(), 1);
    assert_eq!(node.local_client_count(), 1);
}

/// An application's stream that hands over one byte per read, as a TLS layer or a slow link
/// may.
struct OneByteReads(TcpStream);

impl tokio::io::AsyncRead for OneByteReads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut byte = [0u8; 1];
        let mut one = tokio::io::ReadBuf::new(&mut byte);
        let polled = Pin::new(&mut self.0).poll_read(cx, &mut one);
        if polled.is_ready() && buf.remaining() > 0 {
            buf.put_slice(one.filled());
        }
        polled
    }
}

impl tokio::io::AsyncWrite for OneByteReads {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A message that takes thousands of reads keeps its connection's task reading until tokio's
/// cooperative budget for the poll is spent (128 reads): the read is then `Pending`, the task
/// is woken after the poll, and it must return rather than go round again. The application's
/// server runs on a one-thread runtime of its own, so a task that held the thread would stop
/// it for everyone, and the other client here would get no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_busy_reading_does_not_hold_a_one_thread_server() {
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Not joined: were the thread held, joining would hang the test instead of failing it.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let node = Node::builder().build().await.expect("node builds");
            crosswire::demo::install(&node);
            let acceptor = WsAcceptor::new(node, WsConfig::default());
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let _ = addr_tx.send(listener.local_addr().expect("local addr"));
            let route = move |request| acceptor.accept(request).map(Either::Right);
            tokio::select! {
                _ = serve_on(listener, route, OneByteReads) => {}
                _ = stop_rx => {}
            }
        });
    });
    let addr = timeout(WAIT, addr_rx)
        .await
        .expect("server up in time")
        .expect("server thread alive");

    let mut busy = TestClient::connect(&format!("ws://{addr}/?id=busy")).await;
    let mut other = TestClient::connect(&format!("ws://{addr}/?id=other")).await;
    // 64 KiB: 64 Ki reads of one byte, that the socket holds all at once.
    busy.send_text(
        &json!({"event": "say", "payload": "x".repeat(64 << 10), "callbackId": "1"}).to_string(),
    )
    .await;
    let (reply, _) = timeout(WAIT, other.request("say", json!("still there?")))
        .await
        .expect("the server answers another client while one message takes many reads");
    assert_eq!(reply["echo"], "still there?");
    let (reply, _) = timeout(WAIT, busy.request("say", json!("and me?")))
        .await
        .expect("the busy client is answered too");
    assert_eq!(reply["echo"], "and me?");
    let _ = stop_tx.send(());
}
