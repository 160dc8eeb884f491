//! `fanout`: many clients; one client at a time asks the server to `broadcast` to everyone,
//! then to push `toRoom` to one of several rooms. Deliveries per server CPU-second is the
//! figure.
//!
//! With several server kinds, every kind is started and connected first, and the steps are
//! interleaved: each step runs on every kind back to back before the next step, the kind that
//! goes first rotating from step to step. Two kinds' figures for one step are then taken
//! seconds apart, not minutes, so a change in the machine's load between them (these machines
//! are shared) weighs on both alike.

use std::time::Duration;

use crate::load::{Audience, Pool};
use crate::report::{Reporter, Step};
use crate::servers::{ServerKind, ServerProcess};

use super::paced::{self, Paced};
use super::Options;

const SCENARIO: &str = "fanout";

/// A server under test and its clients.
struct Subject {
    server: ServerProcess,
    pool: Pool,
}

/// One measured step.
#[derive(Debug, Clone, Copy)]
enum FanoutStep {
    /// `broadcast` at this many per second.
    Broadcast(f64),
    /// `toRoom` at this many per second.
    ToRoom(f64),
}

/// Runs every fanout step against a fresh server of each of `kinds`, interleaved (see the
/// module doc); rows are emitted in the order of `kinds`, step by step.
pub(super) async fn run(
    kinds: &[ServerKind],
    opts: &Options,
    out: &mut Reporter,
) -> Result<(), String> {
    let n = opts.fanout_clients;
    crate::load::limits::check_sockets((n * kinds.len()) as u64)?;
    let mut subjects = Vec::with_capacity(kinds.len());
    let mut result = Ok(());
    for &kind in kinds {
        match super::spawn(kind, opts).await {
            Ok(server) => {
                let (pool, connected) = super::connect(&[server.addr], n, opts, kind).await;
                subjects.push(Subject { server, pool });
                result = connected;
            }
            Err(error) => result = Err(error),
        }
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = steps(&mut subjects, opts, out).await;
    }
    for subject in subjects {
        super::stop(subject.server, &subject.pool).await;
    }
    result
}

async fn steps(subjects: &mut [Subject], opts: &Options, out: &mut Reporter) -> Result<(), String> {
    if !opts.warm_up.is_zero() {
        // Every server kind alike: the row is checked (nothing lost) but not reported.
        let warm = Options {
            duration: opts.warm_up,
            ..opts.clone()
        };
        for subject in subjects.iter_mut() {
            let row = broadcast(subject, &warm, 10.0).await?;
            if row.lost + row.duplicated + row.misdelivered > 0 {
                return Err(format!(
                    "the warm-up broadcast on {} lost {}, duplicated {}, misdelivered {}",
                    subject.server.kind.name(),
                    row.lost,
                    row.duplicated,
                    row.misdelivered
                ));
            }
        }
    }
    let plan = opts
        .broadcast_rates
        .iter()
        .map(|&rate| FanoutStep::Broadcast(rate))
        .chain(opts.room_rates.iter().map(|&rate| FanoutStep::ToRoom(rate)));
    let rooms = opts.rooms.max(1);
    let mut joined = false;
    for (i, step) in plan.enumerate() {
        if matches!(step, FanoutStep::ToRoom(_)) && !joined {
            for subject in subjects.iter() {
                join_rooms(&subject.pool, rooms).await?;
            }
            joined = true;
        }
        let mut rows: Vec<Option<Step>> = subjects.iter().map(|_| None).collect();
        for k in 0..subjects.len() {
            let j = (i + k) % subjects.len();
            let subject = &mut subjects[j];
            rows[j] = Some(match step {
                FanoutStep::Broadcast(rate) => broadcast(subject, opts, rate).await?,
                FanoutStep::ToRoom(rate) => to_room(subject, opts, rate, rooms).await?,
            });
        }
        for row in rows.into_iter().flatten() {
            out.emit(row);
        }
    }
    Ok(())
}

/// One `toRoom` step at `rate` per second, to `rooms` rooms in turn.
async fn to_room(
    subject: &mut Subject,
    opts: &Options,
    rate: f64,
    rooms: usize,
) -> Result<Step, String> {
    let n = subject.pool.len();
    let step = Paced {
        scenario: SCENARIO,
        label: format!("toRoom@{rate}"),
        rate,
        audience: Audience::Group { groups: rooms },
    };
    let mut row = paced::run(&mut subject.server, &subject.pool, opts, step, |seq, token| {
        let room = seq % rooms as u64;
        let text = format!(
            r#"{{"event":"command","payload":{{"action":"toRoom","roomId":"room{room}","msg":"{token}"}},"callbackId":"c{seq}"}}"#
        );
        ((seq % n as u64) as usize, text)
    })
    .await?;
    row.set("rooms", rooms);
    Ok(row)
}

/// One `broadcast` step at `rate` per second.
async fn broadcast(subject: &mut Subject, opts: &Options, rate: f64) -> Result<Step, String> {
    let n = subject.pool.len();
    let step = Paced {
        scenario: SCENARIO,
        label: format!("broadcast@{rate}"),
        rate,
        audience: Audience::All,
    };
    paced::run(&mut subject.server, &subject.pool, opts, step, |seq, token| {
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
