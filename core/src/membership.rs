//! Cluster membership: every node announces itself on the bridge channel when it starts, every
//! announce interval, and when it shuts down; every node keeps the table of the others and
//! forgets a node that missed too many announcements.
//!
//! The table answers "who is alive?" for automatic reply counts ([`CrossEmit`](crate::CrossEmit)),
//! the socket-id directory (it forgets the ids of a node that left) and the application
//! ([`Node::members`], [`system::NodeJoined`](crate::system::NodeJoined),
//! [`system::NodeLeft`](crate::system::NodeLeft)).

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::envelope::{Announce, AnnouncePhase, Body};
use crate::events::system;
use crate::metrics::{LogLimiter, Metrics};
use crate::node::NodeInner;
use crate::Node;

/// Default interval between a node's announcements.
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);
/// Default number of announcements a node may miss before the others forget it.
pub const DEFAULT_MISSED_ANNOUNCEMENTS: u32 = 3;

/// Most other nodes a node keeps in its table. Announcements of further nodes are dropped,
/// counted in [`MetricsSnapshot::members_refused`](crate::MetricsSnapshot::members_refused)
/// and logged: a table (and the reply expectations built from it) cannot be grown without
/// bound by whoever can publish on the broker.
pub const MAX_MEMBERS: usize = 1024;

/// One node of the cluster, as this node last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// Its server name.
    pub name: String,
    /// Whether it serves WebSocket clients (a back-end node does not).
    pub serves_clients: bool,
    /// When it started (its own clock).
    pub started_at: SystemTime,
    /// When this node last heard from it (this node's clock; now, for this node itself).
    pub last_seen: SystemTime,
    /// Its bound clients when it last announced itself (now, for this node itself).
    pub clients: usize,
}

/// What this node knows of the others.
pub(crate) struct Membership {
    /// This process's instance of the node, random.
    pub(crate) instance: u64,
    pub(crate) started_at: SystemTime,
    pub(crate) interval: Duration,
    missed: u32,
    serves_clients: AtomicBool,
    others: Mutex<HashMap<Arc<str>, Peer>>,
    /// Limits the duplicate-name and table-full errors to one line a second.
    duplicate_log: LogLimiter,
}

struct Peer {
    announce: Announce,
    last_seen: Instant,
    last_seen_wall: SystemTime,
    /// The instance before the current one, to recognise two live instances alternating.
    previous_instance: Option<u64>,
}

/// What one announcement changed.
#[derive(Debug, Default)]
pub(crate) struct Change {
    pub(crate) joined: Option<Member>,
    pub(crate) left: Option<Member>,
    /// Two live instances use the sender's name.
    pub(crate) duplicate: bool,
    /// The table is full ([`MAX_MEMBERS`]): the sender was not added.
    pub(crate) refused: bool,
}

impl Membership {
    pub(crate) fn new(interval: Duration, missed: u32) -> Self {
        Membership {
            instance: RandomState::new().hash_one(std::process::id()),
            started_at: SystemTime::now(),
            interval,
            missed,
            serves_clients: AtomicBool::new(false),
            others: Mutex::new(HashMap::new()),
            duplicate_log: LogLimiter::new(),
        }
    }

    /// Returns whether this changed it.
    pub(crate) fn set_serves_clients(&self) -> bool {
        !self.serves_clients.swap(true, Ordering::Relaxed)
    }

    /// This node's announcement.
    pub(crate) fn announce(&self, clients: usize, phase: AnnouncePhase) -> Announce {
        Announce {
            instance: self.instance,
            started_at_ms: millis(self.started_at),
            serves_clients: self.serves_clients.load(Ordering::Relaxed),
            clients: clients as u64,
            phase,
        }
    }

    /// The table entry of this node itself.
    pub(crate) fn me(&self, name: &str, clients: usize) -> Member {
        Member {
            name: name.to_owned(),
            serves_clients: self.serves_clients.load(Ordering::Relaxed),
            started_at: self.started_at,
            last_seen: SystemTime::now(),
            clients,
        }
    }

    /// Records an announcement of `sender`.
    pub(crate) fn observe(&self, sender: &str, announce: Announce) -> Change {
        let mut change = Change::default();
        let mut others = self.others.lock();
        if announce.phase == AnnouncePhase::Leaving {
            let known = others
                .get(sender)
                .is_some_and(|peer| peer.announce.instance == announce.instance);
            if known {
                change.left = others.remove(sender).map(|peer| peer.member(sender));
            }
            return change;
        }
        let now = Instant::now();
        let full = others.len() >= MAX_MEMBERS;
        match others.entry(Arc::from(sender)) {
            Entry::Vacant(_) if full => change.refused = true,
            Entry::Vacant(entry) => {
                let peer = entry.insert(Peer {
                    announce,
                    last_seen: now,
                    last_seen_wall: SystemTime::now(),
                    previous_instance: None,
                });
                change.joined = Some(peer.member(sender));
            }
            Entry::Occupied(mut entry) => {
                let peer = entry.get_mut();
                if peer.announce.instance != announce.instance {
                    if peer.previous_instance == Some(announce.instance) {
                        change.duplicate = true;
                    } else {
                        // A restart: the old instance is gone, with whatever it was asked.
                        change.left = Some(peer.member(sender));
                    }
                    peer.previous_instance = Some(peer.announce.instance);
                }
                peer.announce = announce;
                peer.last_seen = now;
                peer.last_seen_wall = SystemTime::now();
                if change.left.is_some() {
                    change.joined = Some(peer.member(sender));
                }
            }
        }
        change
    }

    /// Forgets the nodes not heard of for `missed` intervals; returns them.
    pub(crate) fn expire(&self) -> Vec<Member> {
        let deadline = self.interval * self.missed;
        let now = Instant::now();
        let mut expired = Vec::new();
        self.others.lock().retain(|name, peer| {
            let alive = now.duration_since(peer.last_seen) <= deadline;
            if !alive {
                expired.push(peer.member(name));
            }
            alive
        });
        expired
    }

    /// Whether `name` is a live member other than this node.
    pub(crate) fn is_alive(&self, name: &str) -> bool {
        self.others.lock().contains_key(name)
    }

    /// The names of the other live nodes.
    pub(crate) fn other_names(&self) -> Vec<Arc<str>> {
        self.others.lock().keys().cloned().collect()
    }

    /// How many other nodes are in the member table.
    pub(crate) fn other_count(&self) -> usize {
        self.others.lock().len()
    }

    pub(crate) fn others(&self) -> Vec<Member> {
        let others = self.others.lock();
        others
            .iter()
            .map(|(name, peer)| peer.member(name))
            .collect()
    }
}

impl Peer {
    fn member(&self, name: &str) -> Member {
        Member {
            name: name.to_owned(),
            serves_clients: self.announce.serves_clients,
            started_at: from_millis(self.announce.started_at_ms),
            last_seen: self.last_seen_wall,
            clients: usize::try_from(self.announce.clients).unwrap_or(usize::MAX),
        }
    }
}

pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Node {
    /// Every live node of the cluster as this node knows it, this node included, sorted by
    /// name. A node learns of the others within one broker round trip of its start (they
    /// announce themselves back), and forgets one that shut down at once, or that stopped
    /// announcing after
    /// [`missed_announcements`](crate::NodeBuilder::missed_announcements) ×
    /// [`announce_interval`](crate::NodeBuilder::announce_interval).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
    /// let node = crosswire_core::Node::builder().build().await?;
    /// let members = node.members();
    /// assert_eq!(members.len(), 1);
    /// assert_eq!(members[0].name, "standalone");
    /// # Ok(()) }
    /// ```
    pub fn members(&self) -> Vec<Member> {
        let membership = &self.inner().membership;
        let mut members = membership.others();
        members.push(membership.me(self.server_name(), self.local_client_count()));
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members
    }

    /// Marks this node as serving WebSocket clients, which its announcements then say (see
    /// [`Member::serves_clients`]); the others hear of it at once. Client transports call it
    /// when they are set up.
    pub fn mark_serving_clients(&self) {
        if !self.inner().membership.set_serves_clients() || self.inner().broker.is_none() {
            return;
        }
        // Outside a runtime, the next periodic announcement tells them.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let node = self.clone();
            runtime.spawn(async move { node.announce(AnnouncePhase::Alive).await });
        }
    }

    /// Publishes this node's announcement on the bridge channel.
    pub(crate) async fn announce(&self, phase: AnnouncePhase) {
        let announce = self
            .inner()
            .membership
            .announce(self.local_client_count(), phase);
        let channel = self.inner().names.bridge.clone();
        // A failure is counted and logged by `publish_envelope`; the next interval retries.
        let _ = self
            .publish_envelope(&channel, Body::Announce(announce))
            .await;
    }

    /// Handles an announcement from `sender` (which may carry this node's own name).
    pub(crate) fn handle_announce(&self, sender: &str, announce: Announce) {
        let inner = self.inner();
        if sender == self.server_name() {
            if announce.instance != inner.membership.instance {
                self.report_duplicate(sender);
            }
            return;
        }
        let change = inner.membership.observe(sender, announce);
        if change.refused {
            Metrics::add(&inner.metrics.members_refused);
            if let Some(held_back) = inner.membership.duplicate_log.allow() {
                tracing::error!(
                    node = sender,
                    held_back,
                    limit = MAX_MEMBERS,
                    "ignored a node's announcement: the member table is full"
                );
            }
            return;
        }
        if change.duplicate {
            self.report_duplicate(sender);
        }
        if let Some(left) = change.left {
            self.node_left(left);
        }
        if let Some(joined) = change.joined {
            tracing::info!(node = %joined.name, serves_clients = joined.serves_clients, "a node joined the cluster");
            self.emit_system(system::NodeJoined, joined);
        }
        if announce.phase == AnnouncePhase::Hello {
            let node = self.clone();
            let newcomer = sender.to_owned();
            tokio::spawn(async move {
                node.announce(AnnouncePhase::Alive).await;
                node.send_bindings_to(&newcomer).await;
            });
        }
    }

    fn report_duplicate(&self, name: &str) {
        let inner = self.inner();
        Metrics::add(&inner.metrics.duplicate_server_names);
        if let Some(held_back) = inner.membership.duplicate_log.allow() {
            tracing::error!(
                server_name = name,
                held_back,
                "two live nodes use the server name `{name}`: replies and targeted deliveries \
                 for it reach either one; give every node a name of its own"
            );
        }
        self.emit_system(system::DuplicateServerName, name.to_owned());
    }

    /// Everything that follows a node leaving: its reply expectations and its socket ids go.
    pub(crate) fn node_left(&self, member: Member) {
        tracing::info!(node = %member.name, "a node left the cluster");
        self.pending().node_left(&member.name);
        self.inner().directory.forget_node(&member.name);
        self.emit_system(system::NodeLeft, member);
    }
}

/// Announces the node at start, then every interval; forgets the nodes that went quiet.
pub(crate) async fn run(node: Weak<NodeInner>, interval: Duration) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = node.upgrade() else { return };
        let node = Node::from_inner(inner);
        node.announce(AnnouncePhase::Alive).await;
        let membership = &node.inner().membership;
        for member in membership.expire() {
            node.node_left(member);
        }
        // Ids announced by a node that never joined (or was forgotten before they came).
        let window = u64::try_from((interval * membership.missed).as_millis()).unwrap_or(u64::MAX);
        let cutoff = millis(SystemTime::now()).saturating_sub(window);
        node.inner()
            .directory
            .sweep(|name| membership.is_alive(name), cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(instance: u64, phase: AnnouncePhase) -> Announce {
        Announce {
            instance,
            started_at_ms: 1_000,
            serves_clients: true,
            clients: 7,
            phase,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn joins_once_and_leaves_on_goodbye_or_silence() {
        let members = Membership::new(Duration::from_secs(1), 3);
        let first = members.observe("b", announce(1, AnnouncePhase::Hello));
        assert_eq!(
            first.joined.map(|m| (m.name, m.clients)),
            Some(("b".into(), 7))
        );
        assert!(members
            .observe("b", announce(1, AnnouncePhase::Alive))
            .joined
            .is_none());
        members.observe("c", announce(2, AnnouncePhase::Alive));

        // A goodbye from another instance of `b` is not b's.
        assert!(members
            .observe("b", announce(9, AnnouncePhase::Leaving))
            .left
            .is_none());
        assert!(members
            .observe("b", announce(1, AnnouncePhase::Leaving))
            .left
            .is_some());
        assert!(!members.is_alive("b"));

        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(
            members.expire().is_empty(),
            "3 missed intervals are tolerated"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let expired: Vec<String> = members.expire().into_iter().map(|m| m.name).collect();
        assert_eq!(expired, ["c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_is_a_leave_and_a_join_and_alternating_instances_are_duplicates() {
        let members = Membership::new(Duration::from_secs(1), 3);
        members.observe("b", announce(1, AnnouncePhase::Alive));
        let restart = members.observe("b", announce(2, AnnouncePhase::Hello));
        assert!(restart.left.is_some() && restart.joined.is_some() && !restart.duplicate);
        // Instance 1 speaks again: two processes share the name.
        assert!(
            members
                .observe("b", announce(1, AnnouncePhase::Alive))
                .duplicate
        );
        assert!(
            members
                .observe("b", announce(2, AnnouncePhase::Alive))
                .duplicate
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_stops_growing_at_its_limit() {
        let members = Membership::new(Duration::from_secs(1), 3);
        for n in 0..MAX_MEMBERS {
            let change =
                members.observe(&format!("n{n}"), announce(n as u64, AnnouncePhase::Alive));
            assert!(change.joined.is_some() && !change.refused);
        }
        let change = members.observe("one-more", announce(0, AnnouncePhase::Alive));
        assert!(change.refused && change.joined.is_none());
        assert!(!members.is_alive("one-more"));
        assert!(
            !members
                .observe("n0", announce(0, AnnouncePhase::Alive))
                .refused
        );
    }
}
