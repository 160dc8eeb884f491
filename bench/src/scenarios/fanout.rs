//! `fanout`: many clients; one client at a time asks the server to `broadcast` to everyone,
//! then to push `toRoom` to one of several rooms. Deliveries per server CPU-second is the
//! figure.

use std::time::Duration;

use crate::load::{Audience, Pool};
use crate::report::{Reporter, Step};
use crate::servers::{ServerKind, ServerProcess};

use super::paced::{self, Paced};
use super::Options;

const SCENARIO: &str = "fanout";

/// Runs every fanout step against a fresh server of `kind`.
pub(super) async fn run(
    kind: ServerKind,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let n = opts.fanout_clients;
    crate::load::limits::check_sockets(n as u64)?;
    let mut server = super::spawn(kind, opts).await?;
    let (pool, connected) = Pool::connect(&[server.addr], n, &opts.pool).await;
    if connected.connected < n {
        let error = connected.first_error.unwrap_or_default();
        super::stop(server, &pool).await;
        return Err(format!(
            "only {} of {n} clients connected: {error}",
            connected.connected
        ));
    }
    eprintln!(
        "{}: {n} clients connected in {:.2} s",
        kind.name(),
        connected.elapsed.as_secs_f64()
    );
    let result = steps(&mut server, &pool, opts, out).await;
    super::stop(server, &pool).await;
    result
}

async fn steps(
    server: &mut ServerProcess,
    pool: &Pool,
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    if !opts.warm_up.is_zero() {
        // Every server kind alike: the row is checked (nothing lost) but not reported.
        let warm = Options {
            duration: opts.warm_up,
            ..opts.clone()
        };
        let row = broadcast(server, pool, &warm, 10.0).await?;
        if row.lost + row.duplicated + row.misdelivered > 0 {
            return Err(format!(
                "the warm-up broadcast lost {}, duplicated {}, misdelivered {}",
                row.lost, row.duplicated, row.misdelivered
            ));
        }
    }
    for &rate in &opts.broadcast_rates {
        out.emit(broadcast(server, pool, opts, rate).await?);
    }
    if opts.room_rates.is_empty() {
        return Ok(());
    }
    let (n, rooms) = (pool.len(), opts.rooms.max(1));
    join_rooms(pool, rooms).await?;
    for &rate in &opts.room_rates {
        let step = Paced {
            scenario: SCENARIO,
            label: format!("toRoom@{rate}"),
            rate,
            audience: Audience::Group { groups: rooms },
        };
        let row = paced::run(server, pool, opts, step, |seq, token| {
            let room = seq % rooms as u64;
            let text = format!(
                r#"{{"event":"command","payload":{{"action":"toRoom","roomId":"room{room}","msg":"{token}"}},"callbackId":"c{seq}"}}"#
            );
            ((seq % n as u64) as usize, text)
        })
        .await?;
        let mut row = row;
        row.set("rooms", rooms);
        out.emit(row);
    }
    Ok(())
}

/// One `broadcast` step at `rate` per second.
async fn broadcast(
    server: &mut ServerProcess,
    pool: &Pool,
    opts: &Options,
    rate: f64,
) -> Result<Step, String> {
    let n = pool.len();
    let step = Paced {
        scenario: SCENARIO,
        label: format!("broadcast@{rate}"),
        rate,
        audience: Audience::All,
    };
    paced::run(server, pool, opts, step, |seq, token| {
        let text = format!(
            r#"{{"event":"command","payload":{{"action":"broadcast","msg":"{token}"}},"callbackId":"c{seq}"}}"#
        );
        ((seq % n as u64) as usize, text)
    })
    .await
}

/// Client i joins room `i % rooms`; waits for every join's reply.
pub(super) async fn join_rooms(pool: &Pool, rooms: usize) -> Result<(), String> {
    let before = pool.replies(b'j');
    let failed = pool.failed_replies(b'j');
    for i in 0..pool.len() {
        let text = format!(
            r#"{{"event":"joinRoom","payload":{{"roomId":"room{}"}},"callbackId":"j{i}"}}"#,
            i % rooms
        );
        pool.send(i, text);
    }
    let target = before + pool.len() as u64;
    if !pool
        .wait_replies(b'j', target, Duration::from_secs(30))
        .await
    {
        return Err(format!(
            "only {} of {} joinRoom replies within 30 s",
            pool.replies(b'j') - before,
            pool.len()
        ));
    }
    let failed = pool.failed_replies(b'j') - failed;
    if failed > 0 {
        return Err(format!("{failed} joinRoom requests failed"));
    }
    Ok(())
}
