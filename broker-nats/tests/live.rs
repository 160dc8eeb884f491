//! The NATS broker against a real `nats-server` (installed by `scripts/test.sh`; Debian:
//! `apt-get install -y nats-server`) on a free port: hostile channel names end to end, the
//! `max_payload` check, connection errors, and health across a server restart.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crosswire_core::{Broker, BrokerErrorKind, BrokerHealth, Inbound};
use crosswire_nats::{NatsBroker, NatsBrokerError, NatsHealth, NatsHealthEvent};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A `nats-server` child process on 127.0.0.1, killed on drop.
struct Server {
    port: u16,
    config: Option<TempConfig>,
    child: Option<Child>,
}

/// A config file removed on drop (no extra dependency for one file).
struct TempConfig(std::path::PathBuf);

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Server {
    async fn start(config: Option<&str>) -> Server {
        let port = free_port();
        let config = config.map(|text| {
            let path = std::env::temp_dir()
                .join(format!("crosswire-nats-{}-{port}.conf", std::process::id()));
            std::fs::write(&path, text).expect("write the nats-server config");
            TempConfig(path)
        });
        let mut server = Server {
            port,
            config,
            child: None,
        };
        server.restart().await;
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// (Re)starts on the same port and waits until it greets a client.
    async fn restart(&mut self) {
        self.kill().await;
        let mut command = Command::new("nats-server");
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(config) = &self.config {
            command.arg("-c").arg(&config.0);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server (install it: apt-get install -y nats-server)");
        self.child = Some(child);
        let port = self.port;
        tokio::time::timeout(WAIT, async move {
            use tokio::io::AsyncReadExt;
            loop {
                if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let mut buf = [0u8; 4];
                    if stream.read_exact(&mut buf).await.is_ok() && &buf == b"INFO" {
                        return;
                    }
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("nats-server greets within 10 s");
    }
}

async fn recv(inbound: &mut Inbound) -> (String, Bytes) {
    let m = tokio::time::timeout(WAIT, inbound.recv())
        .await
        .expect("a message within 10 s")
        .expect("the inbound stream is open");
    (m.channel, m.payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_channel_names_stay_apart() {
    let server = Server::start(None).await;
    let broker = NatsBroker::builder()
        .url(&server.url())
        .build()
        .await
        .unwrap();
    let mut inbound = broker.take_inbound().unwrap();
    let names: Vec<String> = [
        "a.b",
        "a",
        "b",
        "*",
        ">",
        "a b",
        "",
        "~",
        "~7E",
        "日本語",
        "a.*",
        "a.>",
        "$SYS.x",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(["x".repeat(256), "é".repeat(128)])
    .collect();
    for name in &names {
        broker.subscribe(name).await.unwrap();
    }
    for name in &names {
        broker
            .publish(name, Bytes::from(format!("for {name}")))
            .await
            .unwrap();
        let (channel, payload) = recv(&mut inbound).await;
        assert_eq!(channel, *name);
        assert_eq!(payload, format!("for {name}").as_bytes());
    }
    // A publish on an unsubscribed name that wildcards or dots would have matched reaches
    // nothing: `a.b` is not `a` then `b`, and `*` is not a wildcard.
    broker
        .publish("a.c", Bytes::from_static(b"no"))
        .await
        .unwrap();
    broker
        .publish("c", Bytes::from_static(b"no"))
        .await
        .unwrap();
    broker
        .publish("a", Bytes::from_static(b"marker"))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut inbound).await,
        ("a".to_owned(), Bytes::from_static(b"marker"))
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(150), inbound.recv())
            .await
            .is_err(),
        "nothing else arrives"
    );
    let mut channels = broker.channels().await;
    channels.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(channels, expected);
    assert_eq!(broker.subject_for("ws:chat"), "crosswire.ws~3Achat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_over_max_payload_are_rejected_naming_the_limit() {
    let server = Server::start(Some("max_payload: 4096\n")).await;
    let broker = NatsBroker::builder()
        .url(&server.url())
        .build()
        .await
        .unwrap();
    assert_eq!(broker.max_payload(), 4096);
    let mut inbound = broker.take_inbound().unwrap();
    broker.subscribe("big").await.unwrap();
    broker
        .publish("big", Bytes::from(vec![7u8; 4096]))
        .await
        .unwrap();
    assert_eq!(recv(&mut inbound).await.1.len(), 4096);
    let err = broker
        .publish("big", Bytes::from(vec![7u8; 4097]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BrokerErrorKind::Rejected);
    assert!(err.to_string().contains("4096"), "{err}");
    assert!(
        broker.is_healthy(),
        "a refused publish does not break the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_and_unreachable_servers_fail_the_build() {
    let err = NatsBroker::builder()
        .subject_prefix("a.*")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, NatsBrokerError::InvalidPrefix { .. }),
        "{err}"
    );
    let err = NatsBroker::builder()
        .url("nats://u:secret@[::1")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, NatsBrokerError::InvalidUrl { .. }), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    let err = NatsBroker::builder()
        .url(&format!("nats://127.0.0.1:{}", free_port()))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, NatsBrokerError::Connect { .. }), "{err}");
    let builder = NatsBroker::builder()
        .url("nats://u:secret@127.0.0.1:1")
        .user_password("u", "secret")
        .token("secret");
    assert!(!format!("{builder:?}").contains("secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_a_server_restart_and_subscriptions_come_back() {
    let mut server = Server::start(None).await;
    let (events, mut health) = mpsc::unbounded_channel::<NatsHealthEvent>();
    let broker: Arc<NatsBroker> = NatsBroker::builder()
        .url(&server.url())
        .server_name("a")
        .on_health_change(move |e| {
            let _ = events.send(e);
        })
        .build()
        .await
        .unwrap();
    assert!(broker.is_healthy());
    assert_eq!(broker.health(), BrokerHealth::new(1, 1));
    let mut inbound = broker.take_inbound().unwrap();
    broker.subscribe("room").await.unwrap();

    server.kill().await;
    let down = next_event(&mut health, NatsHealth::Disconnected)
        .await
        .expect("a Disconnected event");
    assert!(!down.healthy);
    assert_eq!(down.server_name, "a");
    assert!(!broker.is_healthy());
    assert_eq!(broker.health(), BrokerHealth::new(1, 0));
    let err = broker
        .publish("room", Bytes::from_static(b"lost"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BrokerErrorKind::Unavailable);

    server.restart().await;
    let up = next_event(&mut health, NatsHealth::Connected)
        .await
        .expect("a Connected event");
    assert!(up.healthy);
    assert!(
        up.server.ends_with(&server.port.to_string()),
        "{}",
        up.server
    );
    // The client re-subscribed on its own: a fresh subscribe (its probe round trip) after
    // the reconnect orders the re-subscription before the publish.
    broker.subscribe("marker").await.unwrap();
    broker
        .publish("room", Bytes::from_static(b"back"))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut inbound).await,
        ("room".to_owned(), Bytes::from_static(b"back"))
    );
    assert_eq!(broker.slow_consumer_events(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_events_count_the_attempts_with_the_default_backoff() {
    let mut server = Server::start(None).await;
    let (events, mut health) = mpsc::unbounded_channel::<NatsHealthEvent>();
    let broker: Arc<NatsBroker> = NatsBroker::builder()
        .url(&server.url())
        .server_name("r")
        .on_health_change(move |e| {
            let _ = events.send(e);
        })
        .build()
        .await
        .unwrap();
    broker.subscribe("room").await.unwrap();

    for round in 0..2 {
        server.kill().await;
        // Disconnected first, then one Reconnecting per try, counted from 1, with async-nats'
        // default delays (none, then 2^(attempt - 1) ms); connection errors may come between.
        let mut seen = Vec::new();
        tokio::time::timeout(WAIT, async {
            while seen.len() < 4 {
                let e = health.recv().await.expect("health events");
                match e.event {
                    NatsHealth::Disconnected | NatsHealth::Reconnecting { .. } => {
                        assert!(!e.healthy, "{e:?}");
                        assert_eq!(e.server_name, "r");
                        seen.push(e.event);
                    }
                    // The first connection's event may come late, and the client reports
                    // each failed try as an error.
                    NatsHealth::Connected if round == 0 && seen.is_empty() => {}
                    NatsHealth::ClientError => {}
                    other => panic!("unexpected {other:?} after {seen:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("Disconnected and 3 Reconnecting within {WAIT:?}: {seen:?}"));
        assert_eq!(
            seen,
            [
                NatsHealth::Disconnected,
                NatsHealth::Reconnecting {
                    attempt: 1,
                    delay: Duration::ZERO
                },
                NatsHealth::Reconnecting {
                    attempt: 2,
                    delay: Duration::from_millis(2)
                },
                NatsHealth::Reconnecting {
                    attempt: 3,
                    delay: Duration::from_millis(4)
                },
            ]
        );
        assert!(!broker.is_healthy());

        server.restart().await;
        // More tries until one succeeds, each one more; then Connected, healthy.
        let mut last = 3;
        let up = tokio::time::timeout(WAIT, async {
            loop {
                let e = health.recv().await.expect("health events");
                match e.event {
                    NatsHealth::Reconnecting { attempt, .. } => {
                        assert_eq!(attempt, last + 1, "tries are counted one by one");
                        last = attempt;
                    }
                    NatsHealth::Connected => return e,
                    NatsHealth::ClientError => {}
                    other => panic!("unexpected {other:?} while reconnecting"),
                }
            }
        })
        .await
        .expect("Connected within 10 s of the restart");
        assert!(up.healthy);
        assert!(broker.is_healthy());
    }
}

/// The next health event of kind `want`, skipping others; `Err` after [`WAIT`].
async fn next_event(
    health: &mut mpsc::UnboundedReceiver<NatsHealthEvent>,
    want: NatsHealth,
) -> Result<NatsHealthEvent, tokio::time::error::Elapsed> {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = health.recv().await.expect("health events");
            if e.event == want {
                return e;
            }
        }
    })
    .await
}

/// A broker with `auth` set, on `server`: a publish on a subscribed channel comes back.
async fn round_trip(
    server: &Server,
    auth: impl FnOnce(crosswire_nats::NatsBrokerBuilder) -> crosswire_nats::NatsBrokerBuilder,
) -> Result<(), NatsBrokerError> {
    let broker = auth(
        NatsBroker::builder()
            .url(&server.url())
            .connect_timeout(Duration::from_secs(2)),
    )
    .build()
    .await?;
    let mut inbound = broker.take_inbound().expect("inbound");
    broker.subscribe("auth").await.expect("subscribe");
    broker
        .publish("auth", Bytes::from_static(b"ok"))
        .await
        .expect("publish");
    assert_eq!(
        recv(&mut inbound).await,
        ("auth".to_owned(), Bytes::from_static(b"ok"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_user_password_authenticate_and_wrong_ones_are_refused() {
    let server = Server::start(Some("authorization { token: \"s3cret-token\" }")).await;
    round_trip(&server, |b| b.token("s3cret-token"))
        .await
        .expect("the right token connects");
    let refused = round_trip(&server, |b| b.token("wrong")).await;
    assert!(
        matches!(refused, Err(NatsBrokerError::Connect { .. })),
        "{refused:?}"
    );
    let anonymous = round_trip(&server, |b| b).await;
    assert!(
        matches!(anonymous, Err(NatsBrokerError::Connect { .. })),
        "{anonymous:?}"
    );

    let server = Server::start(Some(
        "authorization { user: crosswire, password: \"pa ss\" }",
    ))
    .await;
    round_trip(&server, |b| b.user_password("crosswire", "pa ss"))
        .await
        .expect("the right user and password connect");
    let refused = round_trip(&server, |b| b.user_password("crosswire", "nope")).await;
    assert!(
        matches!(refused, Err(NatsBrokerError::Connect { .. })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_root_connects_and_without_it_is_refused() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("a self-signed certificate");
    let dir = std::env::temp_dir().join(format!("crosswire-nats-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
    let config = format!(
        "tls {{ cert_file: {:?}, key_file: {:?} }}",
        cert.display().to_string(),
        key.display().to_string()
    );
    let server = Server::start(Some(&config)).await;
    round_trip(&server, |b| b.require_tls(true).root_certificates(&cert))
        .await
        .expect("TLS with the server's certificate as root connects");
    let untrusted = round_trip(&server, |b| b.require_tls(true)).await;
    assert!(
        matches!(untrusted, Err(NatsBrokerError::Connect { .. })),
        "{untrusted:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A NATS JWT v2 (`{"typ":"JWT","alg":"ed25519-nkey"}`) for `subject`, named `name`, with the
/// `nats` claims `nats`, signed by `issuer`: base64url (no padding) of the header and of the
/// claims, then of the ed25519 signature of `header.claims`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    let claims = serde_json::json!({
        // Any unique id will do: a fresh public key is one.
        "jti": nkeys::KeyPair::new_user().public_key(),
        "iat": issued_at,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("sign the JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An account JWT for `account` signed by `operator`, with no limits (absent limits are
/// zero, which would allow no connection, subscription or payload).
fn account_jwt(operator: &nkeys::KeyPair, account: &nkeys::KeyPair) -> String {
    nats_jwt(
        operator,
        &account.public_key(),
        "crosswire-account",
        serde_json::json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
            },
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account",
            "version": 2,
        }),
    )
}

/// A `.creds` file for a fresh user of `account`: its JWT, then its NKey seed.
fn creds_file(account: &nkeys::KeyPair, path: &std::path::Path) {
    let user = nkeys::KeyPair::new_user();
    let jwt = nats_jwt(
        account,
        &user.public_key(),
        "crosswire-user",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user",
            "version": 2,
        }),
    );
    let seed = user.seed().expect("the user's seed");
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    );
    std::fs::write(path, text).expect("write the creds file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_authenticates_in_operator_mode_and_foreign_ones_are_refused() {
    // Operator mode with the memory resolver: the server trusts the operator, knows the one
    // account it preloads, and admits users whose JWT that account signed.
    let operator = nkeys::KeyPair::new_operator();
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "crosswire-operator",
        serde_json::json!({ "type": "operator", "version": 2 }),
    );
    let account = nkeys::KeyPair::new_account();
    let config = format!(
        "operator: {operator_jwt:?}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {:?}\n}}\n",
        account.public_key(),
        account_jwt(&operator, &account)
    );
    let server = Server::start(Some(&config)).await;

    let dir = std::env::temp_dir().join(format!("crosswire-nats-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (good, foreign) = (dir.join("good.creds"), dir.join("foreign.creds"));
    creds_file(&account, &good);
    // A user of another account, even one the same operator signed, is unknown to the server.
    creds_file(&nkeys::KeyPair::new_account(), &foreign);

    round_trip(&server, |b| b.credentials_file(&good))
        .await
        .expect("the account's user connects");
    let refused = round_trip(&server, |b| b.credentials_file(&foreign)).await;
    assert!(
        matches!(refused, Err(NatsBrokerError::Connect { .. })),
        "{refused:?}"
    );
    let anonymous = round_trip(&server, |b| b).await;
    assert!(
        matches!(anonymous, Err(NatsBrokerError::Connect { .. })),
        "{anonymous:?}"
    );
    // A file that is missing or holds no credentials fails before any connection is tried.
    let missing = round_trip(&server, |b| b.credentials_file(dir.join("missing.creds"))).await;
    assert!(
        matches!(missing, Err(NatsBrokerError::Credentials { .. })),
        "{missing:?}"
    );
    let garbage = dir.join("garbage.creds");
    std::fs::write(&garbage, "not a creds file\n").expect("write the garbage file");
    let garbage = round_trip(&server, |b| b.credentials_file(&garbage)).await;
    assert!(
        matches!(garbage, Err(NatsBrokerError::Credentials { .. })),
        "{garbage:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
