//! Smoke test of the shared test client against the demo server.

mod support;
use support::client::{Received, TestClient};

#[tokio::test]
async fn support_client_talks_to_a_demo_server() {
    let node = crosswire::Node::builder().build().await.unwrap();
    crosswire::demo::install(&node);
    let server = crosswire::ws::WsServer::bind("127.0.0.1:0", node.clone(), Default::default())
        .await
        .unwrap();
    let mut c = TestClient::with_id(server.local_addr(), "1").await;
    c.send_text("").await;
    assert_eq!(c.recv().await, Received::Text(String::new()));
    let (reply, _) = c.request("say", serde_json::json!({"a": 1})).await;
    assert_eq!(reply["echo"]["a"], 1);
}
