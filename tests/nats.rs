//! The NATS broker against real `nats-server` processes started on free ports: the node
//! conformance cases, a server restart under steady traffic, subscriptions back once a
//! reconnected broker reports healthy, a cluster of two routed
//! servers, one application run unchanged on memory, Redis and NATS, and a cluster of
//! separate OS processes (the `cluster` example).
#![cfg(feature = "nats")]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crosswire::broker::Broker;
use crosswire::nats::NatsBroker;
use crosswire::ws::{WsConfig, WsServer};
use crosswire::Node;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use support::client::{Received, TestClient, QUIET};
use support::cluster_process::ClusterProcess;
use support::nats::{NatsCluster, NatsServer};
use support::WAIT;

// ----- the launcher itself -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launcher_starts_kills_restarts_and_clusters_nats_servers() {
    let mut server = NatsServer::start().await;
    let info = support::nats::info_line(server.port()).await;
    assert!(info.starts_with("INFO {"), "greeting: {info}");
    assert!(support::nats::answers(server.port()).await);

    server.kill().await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .is_err(),
        "a killed server accepts nothing"
    );
    server.restart().await;
    assert!(
        support::nats::answers(server.port()).await,
        "restarted on the same port"
    );
    drop(server);

    let cluster = NatsCluster::start(2).await;
    for s in &cluster.servers {
        assert_eq!(
            s.num_routes().await,
            Some(1),
            "server {} has its route",
            s.port()
        );
        let info = support::nats::info_line(s.port()).await;
        assert!(
            info.contains("\"cluster\""),
            "cluster member greeting: {info}"
        );
    }
}

// ----- shared helpers ------------------------------------------------------------------------

/// A NATS broker for the crosswire node `name` on `url`.
async fn nats_broker(url: &str, name: &str) -> Arc<NatsBroker> {
    NatsBroker::builder()
        .url(url)
        .server_name(name)
        .build()
        .await
        .expect("build a NATS broker")
}

/// A demo node served over WebSocket, answering the cross-server event `whoami`.
struct Member {
    node: Node,
    server: WsServer,
}

impl Member {
    async fn start(name: &str, broker: Arc<dyn Broker>) -> Member {
        let node = Node::builder()
            .server_name(name)
            .broker(broker)
            .build()
            .await
            .expect("build a node");
        crosswire::demo::install(&node);
        let me = name.to_owned();
        node.on_cross("whoami", move |ev| {
            let me = me.clone();
            async move {
                if ev.wants_reply() {
                    let reply = json!({ "server": me, "asked": ev.value() });
                    ev.reply(&reply).await.expect("whoami reply");
                }
            }
        });
        let server = WsServer::bind("127.0.0.1:0", node.clone(), WsConfig::default())
            .await
            .expect("bind a WebSocket server");
        Member { node, server }
    }

    async fn client(&self, id: &str) -> TestClient {
        TestClient::served(self.server.local_addr(), id).await
    }
}

/// The next push that is not a `probe`: `(event, payload)`.
async fn next_push(client: &mut TestClient, who: &str) -> (String, Value) {
    loop {
        match client.recv().await {
            Received::Json(v) if v["event"] == "probe" => continue,
            Received::Json(v) if v["event"].is_string() => {
                return (
                    v["event"].as_str().unwrap_or_default().to_owned(),
                    v["payload"].clone(),
                )
            }
            other => panic!("{who}: expected a push, got {other:?}"),
        }
    }
}

/// Sends a `probe` push with `send` every 100 ms until `client` receives one (bounded): NATS
/// propagates a subscription across routes asynchronously, so the first messages after a
/// subscribe on another server may find no interest yet.
async fn until_probe_arrives<F, Fut>(client: &mut TestClient, what: &str, send: F)
where
    F: Fn(Value) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let arrived = tokio::time::timeout(Duration::from_secs(10), async {
        for n in 0u64.. {
            send(json!({ "probe": what, "n": n })).await;
            // Earlier probes (of this or another kind) may still come; only this kind counts.
            while let Some(frame) = client.recv_within(Duration::from_millis(100)).await {
                match frame {
                    Received::Json(v) if v["event"] == "probe" => {
                        if v["payload"]["probe"] == what {
                            return;
                        }
                    }
                    other => panic!("{what}: only probes expected so far, got {other:?}"),
                }
            }
        }
    })
    .await;
    assert!(arrived.is_ok(), "{what}: no probe arrived within 10 s");
}

// ----- 1. the node conformance cases ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_conformance_on_one_nats_server() {
    let server = NatsServer::start().await;
    let url = server.url();
    support::conformance::node_conformance(&|| {
        let url = url.clone();
        async move {
            NatsBroker::builder()
                .url(&url)
                .build()
                .await
                .expect("build a NATS broker") as Arc<dyn Broker>
        }
    })
    .await;
}

// ----- 2. nats-server restart under steady traffic -------------------------------------------

/// Waits until `condition()` holds, checking every 10 ms, for at most `wait`; whether it did.
async fn eventually(wait: Duration, condition: impl Fn() -> bool) -> bool {
    tokio::time::timeout(wait, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok()
}

/// Waits until `n` more distinct sequence numbers arrived.
async fn receive(got: &mut mpsc::UnboundedReceiver<u64>, n: usize, received: &mut BTreeSet<u64>) {
    let target = received.len() + n;
    while received.len() < target {
        let seq = tokio::time::timeout(WAIT, got.recv())
            .await
            .expect("traffic keeps flowing")
            .expect("receiver open");
        received.insert(seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_under_steady_traffic_recovers_without_restarting_nodes() {
    let mut nats = NatsServer::start().await;
    let broker_a = nats_broker(&nats.url(), "a").await;
    let broker_b = nats_broker(&nats.url(), "b").await;
    let a = Member::start("a", broker_a.clone()).await;
    let b = Member::start("b", broker_b.clone()).await;
    let mut sender = a.client("pa").await;
    let mut receiver = b.client("pb").await;

    // The receiving client forwards every sequence number it gets.
    let (got_tx, mut got) = mpsc::unbounded_channel::<u64>();
    let receiving = tokio::spawn(async move {
        while let Some(Received::Json(v)) = receiver.recv_within(Duration::from_secs(30)).await {
            if let Some(seq) = v["payload"]["msg"].as_str().and_then(|s| s.parse().ok()) {
                if got_tx.send(seq).is_err() {
                    break;
                }
            }
        }
    });
    // The sending client: one `toPlayer` every 2 ms, remembering when and whether the node
    // reported it sent. `sending_seq` is the number being sent right now.
    let sending_seq = Arc::new(AtomicU64::new(0));
    let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
    let sending = tokio::spawn({
        let sending_seq = sending_seq.clone();
        async move {
            let mut sent: Vec<(u64, bool)> = Vec::new();
            for seq in 0u64.. {
                if stop.try_recv().is_ok() {
                    break;
                }
                sending_seq.store(seq, Ordering::SeqCst);
                let command =
                    json!({ "action": "toPlayer", "toPlayerId": "pb", "msg": seq.to_string() });
                let (reply, _) = sender.request("command", command).await;
                let ok = reply["msg"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Message sent"));
                sent.push((seq, ok));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        }
    });

    let mut received = BTreeSet::new();
    receive(&mut got, 200, &mut received).await;

    let killed_at = Instant::now();
    let last_before_kill = sending_seq.load(Ordering::SeqCst);
    nats.kill().await;
    let noticed = eventually(Duration::from_secs(10), || {
        !broker_a.is_healthy() && !broker_b.is_healthy()
    })
    .await;
    eprintln!(
        "nats-server killed; both brokers reported unhealthy: {noticed} ({:?} after the kill)",
        killed_at.elapsed()
    );
    nats.restart().await;
    let restarted_at = Instant::now();
    let first_after_restart = sending_seq.load(Ordering::SeqCst) + 1;
    let healthy = eventually(Duration::from_secs(15), || {
        broker_a.is_healthy() && broker_b.is_healthy()
    })
    .await;
    assert!(
        healthy,
        "both brokers healthy again within 15 s of the restart"
    );
    eprintln!(
        "nats-server down for {:?}; brokers healthy {:?} after the restart",
        restarted_at - killed_at,
        restarted_at.elapsed()
    );

    // The probe: the first message sent after the restart that arrives. From then on a's
    // connection publishes and b's subscriptions are in place again.
    let probe = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let seq = got.recv().await.expect("receiver open");
            received.insert(seq);
            if seq >= first_after_restart {
                return seq;
            }
        }
    })
    .await
    .expect("traffic flows again within 15 s of the restart (no node restarted)");
    eprintln!(
        "first message through after the restart: #{probe}, {:?} after it",
        restarted_at.elapsed()
    );
    receive(&mut got, 300, &mut received).await;

    let _ = stop_tx.send(());
    let sent = sending.await.expect("the sending client");
    // Drain until everything the node reported sent arrived, or the stream stays quiet.
    let expected: BTreeSet<u64> = sent.iter().filter(|s| s.1).map(|s| s.0).collect();
    while !expected.is_subset(&received) {
        match tokio::time::timeout(Duration::from_secs(2), got.recv()).await {
            Ok(Some(seq)) => {
                received.insert(seq);
            }
            _ => break,
        }
    }
    receiving.abort();
    let failed: Vec<u64> = sent.iter().filter(|s| !s.1).map(|s| s.0).collect();
    let lost: Vec<u64> = sent
        .iter()
        .map(|s| s.0)
        .filter(|seq| !received.contains(seq))
        .collect();
    let lost_before_kill = lost.iter().filter(|&&s| s < last_before_kill).count();
    let lost_in_outage = lost
        .iter()
        .filter(|&&s| (last_before_kill..=probe).contains(&s))
        .count();
    let silently_lost = lost
        .iter()
        .filter(|seq| sent.iter().any(|s| s.0 == **seq && s.1))
        .count();
    let lost_after_probe: Vec<u64> = lost.iter().copied().filter(|&s| s > probe).collect();
    let failed_after_probe = failed.iter().filter(|&&s| s > probe).count();
    eprintln!(
        "MESSAGE LOSS (NATS restart): sent {}, send failures reported {}, received {}, lost {} in total: {lost_before_kill} before the kill, {lost_in_outage} during the outage (#{last_before_kill}..=#{probe}), {} after recovery; {silently_lost} of the lost were reported sent",
        sent.len(),
        failed.len(),
        received.len(),
        lost.len(),
        lost_after_probe.len(),
    );
    assert!(
        lost_after_probe.is_empty(),
        "nothing lost after recovery: {lost_after_probe:?}"
    );
    assert_eq!(failed_after_probe, 0, "no send failed after recovery");
    assert!(
        received.iter().all(|seq| sent.iter().any(|s| s.0 == *seq)),
        "only sent numbers arrive"
    );
}

// ----- 2b. subscriptions are back when a reconnected broker reports healthy -----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_back_as_soon_as_a_reconnected_broker_reports_healthy() {
    use crosswire::nats::NatsHealth;
    use std::sync::atomic::AtomicBool;

    let mut nats = NatsServer::start().await;
    // `back` gets the first healthy Connected event after a Disconnected; `tries` the
    // reconnect attempt numbers.
    let (back_tx, mut back) = mpsc::unbounded_channel::<()>();
    let (tries_tx, mut tries) = mpsc::unbounded_channel::<usize>();
    let was_down = Arc::new(AtomicBool::new(false));
    let broker = NatsBroker::builder()
        .url(&nats.url())
        .server_name("subscriber")
        .on_health_change({
            let was_down = was_down.clone();
            move |e| match e.event {
                NatsHealth::Disconnected => was_down.store(true, Ordering::SeqCst),
                NatsHealth::Reconnecting { attempt, .. } => {
                    let _ = tries_tx.send(attempt);
                }
                NatsHealth::Connected if e.healthy && was_down.load(Ordering::SeqCst) => {
                    let _ = back_tx.send(());
                }
                _ => {}
            }
        })
        .build()
        .await
        .expect("build the subscribing broker");
    let mut inbound = broker.take_inbound().expect("the inbound stream");
    // Many subscriptions, so that re-sending them takes the client and the server a while
    // (reporting healthy on async-nats' own `Connected` event, before the `SUB`s are even
    // queued, lost hundreds of these 5000 messages).
    let channels: Vec<String> = (0..5000).map(|i| format!("ws:room-{i}")).collect();
    for result in futures_util::future::join_all(channels.iter().map(|c| broker.subscribe(c))).await
    {
        result.expect("subscribe");
    }

    nats.kill().await;
    // Let the client's backoff grow (try 10 waits 512 ms first, try 11 1 s), so that the
    // publisher below is connected well before the subscriber comes back.
    tokio::time::timeout(Duration::from_secs(15), async {
        while tries.recv().await.expect("health events") < 10 {}
    })
    .await
    .expect("10 reconnect tries within 15 s");
    nats.restart().await;
    let publisher = nats_broker(&nats.url(), "publisher").await;
    assert!(
        !broker.is_healthy(),
        "the subscriber is still waiting to reconnect"
    );
    tokio::time::timeout(Duration::from_secs(15), back.recv())
        .await
        .expect("the broker reports healthy again within 15 s")
        .expect("health events");
    assert!(broker.is_healthy());
    // At once, the other connection publishes on every channel: each message arrives.
    for channel in &channels {
        publisher
            .publish(channel, bytes::Bytes::from(channel.clone()))
            .await
            .expect("publish");
    }
    let mut missing: BTreeSet<String> = channels.iter().cloned().collect();
    let arrived = tokio::time::timeout(WAIT, async {
        while !missing.is_empty() {
            let message = inbound.recv().await.expect("the inbound stream is open");
            assert_eq!(message.payload, message.channel.as_bytes());
            missing.remove(&message.channel);
        }
    })
    .await;
    assert!(
        arrived.is_ok(),
        "{} of {} messages published right after the broker reported healthy were lost: {:?}",
        missing.len(),
        channels.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );
}

// ----- 3. a cluster of two routed nats-servers -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_two_routed_nats_servers_reach_each_other() {
    let cluster = NatsCluster::start(2).await;
    let a = Member::start("a", nats_broker(&cluster.url(0), "a").await).await;
    let b = Member::start("b", nats_broker(&cluster.url(1), "b").await).await;
    let mut pa = a.client("pa").await;
    let mut pb = b.client("pb").await;
    let (reply, _) = pb.request("joinRoom", json!({ "roomId": "r1" })).await;
    assert_eq!(reply["msg"], "Successfully joined the roomId:r1");

    // Subscriptions cross the route asynchronously: wait until each kind of delivery from a
    // reaches b's client (and a broadcast from b reaches a's client).
    until_probe_arrives(&mut pb, "broadcast a -> b", |probe| {
        let node = a.node.clone();
        async move {
            node.broadcast()
                .emit("probe", &probe)
                .await
                .expect("probe broadcast");
        }
    })
    .await;
    until_probe_arrives(&mut pb, "unicast a -> b", |probe| {
        let node = a.node.clone();
        async move {
            node.to("pb")
                .emit("probe", &probe)
                .await
                .expect("probe unicast");
        }
    })
    .await;
    until_probe_arrives(&mut pb, "room a -> b", |probe| {
        let node = a.node.clone();
        async move {
            node.to_room("chat", "r1")
                .emit("probe", &probe)
                .await
                .expect("probe room");
        }
    })
    .await;
    until_probe_arrives(&mut pa, "broadcast b -> a", |probe| {
        let node = b.node.clone();
        async move {
            node.broadcast()
                .emit("probe", &probe)
                .await
                .expect("probe broadcast");
        }
    })
    .await;

    // Through the demo protocol, from the client on server 1 to the client on server 2.
    let commands = [
        json!({ "action": "toPlayer", "msg": "hi pb", "toPlayerId": "pb" }),
        json!({ "action": "toRoom", "msg": "hi room", "roomId": "r1" }),
        json!({ "action": "broadcast", "msg": "hi all" }),
    ];
    let mut pa_early = Vec::new();
    for command in &commands {
        let (reply, early) = pa.request("command", command.clone()).await;
        // The sender's own broadcast push may arrive before the reply.
        pa_early.extend(early.into_iter().filter(|v| v["event"] != "probe"));
        assert!(
            reply["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("Message sent")),
            "{command}: {reply}"
        );
        let (event, payload) = next_push(&mut pb, "pb").await;
        assert_eq!(
            (event.as_str(), &payload["msg"]),
            ("say", &command["msg"]),
            "pb"
        );
    }
    // The broadcast reached pa too (probes from the settling may still trickle in).
    let (event, payload) = match pa_early.pop() {
        Some(v) => (
            v["event"].as_str().unwrap_or_default().to_owned(),
            v["payload"].clone(),
        ),
        None => next_push(&mut pa, "pa").await,
    };
    assert!(pa_early.is_empty(), "pa: unexpected {pa_early:?}");
    assert_eq!(
        (event.as_str(), payload["msg"].as_str()),
        ("say", Some("hi all"))
    );

    // A cross-server request from the node on server 1 to the node on server 2, and back.
    for (from, to) in [(&a, "b"), (&b, "a")] {
        let result = from
            .node
            .emit_cross("whoami", &json!("across the route"))
            .to([to])
            .timeout(WAIT)
            .collect()
            .await
            .expect("emit");
        assert!(result.success, "{to} answers: {result:?}");
        assert_eq!(
            result.responses[to],
            json!({ "server": to, "asked": "across the route" })
        );
    }
    // No duplicates through the route.
    for (client, who) in [(&mut pa, "pa"), (&mut pb, "pb")] {
        while let Some(frame) = client.recv_within(QUIET).await {
            match frame {
                Received::Json(v) if v["event"] == "probe" => {}
                other => panic!("{who}: unexpected {other:?}"),
            }
        }
    }
}

// ----- 4. one application, three brokers -----------------------------------------------------

/// The application: two nodes on `brokers`, three clients, every kind of delivery and a
/// cross-server request. Returns what the clients and the requester observed, normalized
/// (each client's pushes sorted: deliveries on different channels are not ordered).
async fn app_scenario(brokers: [Arc<dyn Broker>; 2]) -> Vec<String> {
    let [broker_a, broker_b] = brokers;
    let a = Member::start("a", broker_a).await;
    let b = Member::start("b", broker_b).await;
    let mut clients = [
        ("p1", a.client("p1").await),
        ("p2", b.client("p2").await),
        ("p3", b.client("p3").await),
    ];
    let mut transcript = Vec::new();
    // Pushes that arrive while a client waits for a reply, by client.
    let mut early: Vec<Vec<Value>> = vec![Vec::new(); clients.len()];
    for (i, room) in [(0, "r1"), (1, "r1"), (2, "r2")] {
        let (id, client) = &mut clients[i];
        let (reply, pushes) = client.request("joinRoom", json!({ "roomId": room })).await;
        early[i].extend(pushes);
        transcript.push(format!("{id} joinRoom {room}: {}", reply["msg"]));
    }

    let node = &a.node;
    let sent = [
        (
            "broadcast",
            node.broadcast().emit("news", &json!({ "n": 1 })).await,
        ),
        (
            "to_socket_id p2",
            node.to("p2").emit("direct", &json!({ "n": 2 })).await,
        ),
        (
            "to_socket_ids p1 p3",
            node.to(["p1", "p3"])
                .emit("several", &json!({ "n": 3 }))
                .await,
        ),
        (
            "broadcast_to_room r1",
            node.to_room("chat", "r1")
                .emit("room", &json!({ "n": 4 }))
                .await,
        ),
        (
            "broadcast_to_room r2",
            node.to_room("chat", "r2")
                .emit("room", &json!({ "n": 5 }))
                .await,
        ),
    ];
    for (what, delivery) in sent {
        let delivery = delivery.unwrap_or_else(|e| panic!("{what}: {e}"));
        transcript.push(format!("a {what}: {} local", delivery.local));
    }
    // A client command through the demo protocol, from node b's client to everyone in r1.
    let (reply, pushes) = clients[2]
        .1
        .request(
            "command",
            json!({ "action": "toRoom", "roomId": "r1", "msg": "from p3" }),
        )
        .await;
    early[2].extend(pushes);
    transcript.push(format!("p3 command toRoom r1: {}", reply["msg"]));

    let result = a
        .node
        .emit_cross("whoami", &json!("who is there?"))
        .to(["b"])
        .timeout(WAIT)
        .collect()
        .await
        .expect("emit");
    transcript.push(format!(
        "a whoami -> b: success {} {:?}",
        result.success, result.responses
    ));
    let all = a
        .node
        .emit_cross("whoami", &json!("everyone?"))
        .expect(2)
        .timeout(WAIT)
        .collect()
        .await
        .expect("emit");
    let mut servers: Vec<&String> = all.responses.keys().collect();
    servers.sort();
    transcript.push(format!(
        "a whoami -> all: success {} from {servers:?}",
        all.success
    ));

    // Each client: everything it receives until it stays quiet, sorted.
    for ((id, client), early) in clients.iter_mut().zip(early) {
        let mut pushes: Vec<String> = early
            .iter()
            .map(|v| format!("{id} <- {} {}", v["event"], v["payload"]))
            .collect();
        while let Some(frame) = client.recv_within(Duration::from_millis(300)).await {
            pushes.push(match frame {
                Received::Json(v) => format!("{id} <- {} {}", v["event"], v["payload"]),
                other => format!("{id} <- {other:?}"),
            });
        }
        pushes.sort();
        transcript.extend(pushes);
    }
    transcript
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_application_runs_unchanged_on_memory_redis_and_nats() {
    let hub = crosswire::memory::MemoryHub::new();
    let memory = app_scenario([hub.broker(), hub.broker()]).await;

    let nats = NatsServer::start().await;
    let on_nats = app_scenario([
        nats_broker(&nats.url(), "a").await,
        nats_broker(&nats.url(), "b").await,
    ])
    .await;
    eprintln!("transcript:\n{}", memory.join("\n"));
    assert_eq!(on_nats, memory, "NATS and memory transcripts");

    #[cfg(feature = "redis")]
    {
        use crosswire::redis::RedisBroker;
        let redis = support::redis::RedisServer::start().await;
        let mut brokers = Vec::new();
        for name in ["a", "b"] {
            let broker: Arc<dyn Broker> = RedisBroker::builder()
                .url(&redis.url())
                .server_name(name)
                .build()
                .await
                .expect("build a Redis broker");
            brokers.push(broker);
        }
        let [a, b]: [Arc<dyn Broker>; 2] = brokers.try_into().ok().expect("two brokers");
        let on_redis = app_scenario([a, b]).await;
        assert_eq!(on_redis, memory, "Redis and memory transcripts");
    }
}

// ----- 5. separate OS processes --------------------------------------------------------------

async fn start_cluster_process(name: &str, nats: &NatsServer) -> ClusterProcess {
    ClusterProcess::start(name, &["--broker", "nats", "--nats", &nats.url()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_on_nats_form_one_cluster() {
    let nats = NatsServer::start().await;
    let mut processes = Vec::new();
    for name in ["a", "b", "c"] {
        processes.push(start_cluster_process(name, &nats).await);
    }
    let mut p0 = TestClient::connect(&format!("ws://{}/?id=p0", processes[0].addr)).await;
    let mut p2 = TestClient::connect(&format!("ws://{}/?id=p2", processes[2].addr)).await;
    for c in [&mut p0, &mut p2] {
        let (reply, _) = c.request("say", json!("ready?")).await;
        assert_eq!(reply["echo"], "ready?");
    }
    for (from, to_id, msg) in [(0, "p2", "hi p2"), (2, "p0", "hi p0")] {
        let (sender, receiver) = if from == 0 {
            (&mut p0, &mut p2)
        } else {
            (&mut p2, &mut p0)
        };
        let (reply, _) = sender
            .request(
                "command",
                json!({ "action": "toPlayer", "msg": msg, "toPlayerId": to_id }),
            )
            .await;
        assert!(
            reply["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("Message sent")),
            "{reply}"
        );
        let (event, payload) = next_push(receiver, to_id).await;
        assert_eq!(
            (event.as_str(), payload["msg"].as_str()),
            ("say", Some(msg))
        );
    }
    let (_, mut early) = p2
        .request("command", json!({ "action": "broadcast", "msg": "hi all" }))
        .await;
    let own = match early.pop() {
        Some(v) => v["payload"]["msg"].clone(),
        None => next_push(&mut p2, "p2").await.1["msg"].clone(),
    };
    assert_eq!(own, "hi all");
    let (event, payload) = next_push(&mut p0, "p0").await;
    assert_eq!(
        (event.as_str(), payload["msg"].as_str()),
        ("say", Some("hi all"))
    );
}
