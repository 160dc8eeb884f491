//! A command-line client (the JavaScript package's `client.js`): connects with the crosswire
//! connector, joins rooms, sends a request, and prints every event as one JSON line on stdout,
//! so scripts can read it.
//!
//! ```text
//! cargo run --example client -- --url ws://127.0.0.1:9000 --id 7 --join lobby --say hello --duration 5
//! ```
//!
//! Lines: `{"kind":"open"}`, `{"kind":"pong","ms":N}`, `{"kind":"reply","event":E,"payload":P}`,
//! `{"kind":"push","event":E,"payload":P}`, `{"kind":"close","code":C,"reason":R}`,
//! `{"kind":"reconnect","repeat":N,"timeout":MS}`, `{"kind":"error","message":M}`, and
//! `{"kind":"repeat-limit","limit":N}`. Like the JS example it reconnects after a close, except
//! after the codes 4001 (manual) and 4010–4012 (forced logout, authentication failed, kicked).

use std::io::Write;
use std::time::Duration;

use clap::Parser;
use crosswire::client::{system, Connector};
use serde_json::{json, Value};

/// A command-line client: connects, joins rooms, sends a request, and prints every event as
/// one JSON line on stdout.
#[derive(Parser)]
#[command(name = "client", args_override_self = true)]
struct Args {
    /// The server's WebSocket URL
    #[arg(long, value_name = "URL", default_value = "ws://127.0.0.1:9000")]
    url: String,
    /// The socket id (sent as `?id=`)
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// A room to join on every open (repeatable)
    #[arg(long = "join", value_name = "ROOM")]
    join: Vec<String>,
    /// Text of a `say` request sent on every open, after joining
    #[arg(long, value_name = "TEXT")]
    say: Option<String>,
    /// Close and exit after this many seconds (default: run until Ctrl-C or a final close)
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    duration: Option<Duration>,
}

/// Parses a duration in (fractional) seconds.
fn seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{e}"))
}

/// Prints one JSON line and flushes, so a reading script sees it at once.
fn print(line: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut builder = Connector::builder(&args.url);
    if let Some(id) = &args.id {
        builder = builder.param("id", id);
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };

    // Every push, whatever its event name: `on(event)` listens to one name, the raw message
    // listener sees them all.
    client.on_system(system::Message, |text| async move {
        if let Ok(Value::Object(frame)) = serde_json::from_slice::<Value>(&text) {
            if let Some(Value::String(event)) = frame.get("event") {
                print(json!({"kind": "push", "event": event, "payload": frame.get("payload")}));
            }
        }
    });
    client.on_system(system::Pong, |latency| async move {
        print(json!({"kind": "pong", "ms": latency.as_millis() as u64}));
    });
    client.on_system(system::Error, |message| async move {
        print(json!({"kind": "error", "message": &*message}));
    });
    client.on_system(system::Reconnect, |info| async move {
        print(json!({"kind": "reconnect", "repeat": info.repeat, "timeout": info.timeout.as_millis() as u64}));
    });
    client.on_system(system::RepeatLimit, |limit| async move {
        print(json!({"kind": "repeat-limit", "limit": limit}));
    });
    let handle = client.clone();
    client.on_system(system::Close, move |close| {
        print(json!({"kind": "close", "code": close.code, "reason": &*close.reason}));
        // The JS example's rule: no reconnection after a manual close or a server kick.
        if close.code == 4001 || (4010..=4012).contains(&close.code) {
            handle.manual_close();
        } else {
            handle.reconnect(false);
        }
        async {}
    });
    // On every open (reconnections included): join the rooms, then send the request.
    let handle = client.clone();
    let (join, say) = (args.join.clone(), args.say.clone());
    client.on_system(system::Open, move |()| {
        print(json!({"kind": "open"}));
        let (client, join, say) = (handle.clone(), join.clone(), say.clone());
        async move {
            for room in join {
                request(&client, "joinRoom", json!({"roomId": room})).await;
            }
            if let Some(text) = say {
                request(&client, "say", json!({"msg": text})).await;
            }
        }
    });

    client.connect();
    let stop = async {
        match args.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        _ = stop => client.manual_close(),
        _ = client.closed() => {}
    }
    client.closed().await;
}

/// Sends a request and prints its reply or error.
async fn request(client: &Connector, event: &str, payload: Value) {
    match client.request(event, &payload).await {
        Ok(reply) => print(json!({"kind": "reply", "event": event, "payload": reply.value()})),
        Err(error) => print(
            json!({"kind": "error", "message": format!("{event}: {error}"), "code": error.code()}),
        ),
    }
}
