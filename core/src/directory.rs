//! The socket-id directory: which node each socket id of the cluster is bound on.
//!
//! Every node announces the ids it binds and unbinds on the bridge channel (batched by one
//! announcer task, in order). The others record the owner, so that a unicast goes to the
//! owner's inbox only, and resolve a socket id bound on two nodes at once by the
//! [`DuplicateBind`](crate::DuplicateBind) policy: under `Replace` the newer binding wins,
//! under `Refuse` the older one; the loser's connection is closed with 4012.
//!
//! "Newer" compares binding stamps from a hybrid clock: milliseconds of wall time, but always
//! past every stamp this node has seen. A bind that happens after this node heard of another
//! binding of the id is therefore newer than it, whatever the two machines' clocks say; two
//! concurrent binds are ordered by stamp, then by server name, the same way on both nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{watch, Notify};

use crate::envelope::Body;
use crate::membership::millis;
use crate::node::NodeInner;
use crate::options::DuplicateBind;
use crate::room_index::SocketId;
use crate::{close_codes, Node};

/// Most binding changes in one announcement.
const BATCH: usize = 1024;

/// A socket id bound on another node.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub(crate) node: Arc<str>,
    pub(crate) stamp: u64,
}

/// One change of this node's bindings, waiting to be announced.
#[derive(Debug)]
struct Announcement {
    id: SocketId,
    stamp: u64,
    bound: bool,
}

pub(crate) struct Directory {
    owners: RwLock<HashMap<SocketId, Owner>>,
    clock: AtomicU64,
    queue: Mutex<Vec<Announcement>>,
    queued: AtomicU64,
    wake: Arc<Notify>,
    published: watch::Sender<u64>,
}

impl Directory {
    pub(crate) fn new() -> Self {
        Directory {
            owners: RwLock::default(),
            clock: AtomicU64::new(0),
            queue: Mutex::default(),
            queued: AtomicU64::new(0),
            wake: Arc::default(),
            published: watch::channel(0).0,
        }
    }

    /// A stamp for a binding made now: past the wall clock and every stamp seen.
    pub(crate) fn stamp(&self) -> u64 {
        let now = millis(SystemTime::now());
        let mut current = self.clock.load(Ordering::Relaxed);
        loop {
            let next = now.max(current + 1);
            match self
                .clock
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }

    fn witness(&self, stamp: u64) {
        self.clock.fetch_max(stamp, Ordering::AcqRel);
    }

    /// Where `socket_id` is bound, if another node announced it.
    pub(crate) fn owner(&self, socket_id: &str) -> Option<Owner> {
        self.owners.read().get(socket_id).cloned()
    }

    /// Forgets every id of a node that left.
    pub(crate) fn forget_node(&self, node: &str) {
        self.owners.write().retain(|_, owner| &*owner.node != node);
    }

    /// Forgets the ids of nodes that are not members (their announcement may come after
    /// their bindings, so only ids stamped before `stamped_before` go).
    pub(crate) fn sweep(&self, is_member: impl Fn(&str) -> bool, stamped_before: u64) {
        self.owners
            .write()
            .retain(|_, owner| owner.stamp >= stamped_before || is_member(&owner.node));
    }

    /// Number of ids bound on other nodes that this node knows of.
    pub(crate) fn len(&self) -> usize {
        self.owners.read().len()
    }

    /// Queues the announcement of a binding change; returns its sequence number.
    pub(crate) fn queue(&self, id: SocketId, stamp: u64, bound: bool) -> u64 {
        let mut queue = self.queue.lock();
        queue.push(Announcement { id, stamp, bound });
        let seq = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
        drop(queue);
        self.wake.notify_one();
        seq
    }

    /// The sequence number of the latest queued announcement.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Waits until the announcement with sequence number `seq` was published (or failed to
    /// be; failures are counted and logged).
    pub(crate) async fn announced(&self, seq: u64) {
        let mut rx = self.published.subscribe();
        let _ = rx.wait_for(|done| *done >= seq).await;
    }
}

impl Node {
    /// Socket ids bound on other nodes that this node's directory knows of (diagnostics).
    pub fn directory_len(&self) -> usize {
        self.inner().directory.len()
    }

    /// Handles another node's binding changes: records the owners, and settles a socket id
    /// also bound here by the duplicate-bind policy.
    pub(crate) fn handle_bindings(
        &self,
        sender: &str,
        bound: &[(&str, u64)],
        unbound: &[(&str, u64)],
    ) {
        let inner = self.inner();
        let directory = &inner.directory;
        let sender: Arc<str> = Arc::from(sender);
        let mut conflicts = Vec::new();
        {
            let mut owners = directory.owners.write();
            for &(id, stamp) in bound {
                directory.witness(stamp);
                conflicts.push((id, stamp));
                let newer = owners.get(id).is_none_or(|owner| {
                    (owner.stamp, &*owner.node) <= (stamp, &*sender) || owner.node == sender
                });
                if newer {
                    let owner = Owner {
                        node: sender.clone(),
                        stamp,
                    };
                    owners.insert(Arc::from(id), owner);
                }
            }
            for &(id, stamp) in unbound {
                if owners
                    .get(id)
                    .is_some_and(|owner| owner.node == sender && owner.stamp <= stamp)
                {
                    owners.remove(id);
                }
            }
        }
        for (id, stamp) in conflicts {
            self.settle_duplicate(id, stamp, &sender);
        }
    }

    /// `socket_id` was bound on `sender` with `stamp`; if it is bound here too, one of the two
    /// bindings goes.
    fn settle_duplicate(&self, socket_id: &str, stamp: u64, sender: &str) {
        let Some(local) = self.socket(socket_id) else {
            return;
        };
        let ours = (local.bind_stamp(), self.server_name());
        let theirs = (stamp, sender);
        let theirs_wins = match self.options().duplicate_bind {
            DuplicateBind::Replace => theirs > ours,
            DuplicateBind::Refuse => theirs < ours,
        };
        if theirs_wins {
            if let Some(emptied) = self.unbind_connection_quietly(socket_id, &local) {
                self.reconcile_namespaces_later(emptied);
            }
            tracing::debug!(
                socket_id,
                node = sender,
                "socket id bound on another node; closing its connection here"
            );
            local.close(close_codes::KICKED, "logged in on another server");
        } else {
            // The other node may not know of this binding (it joined after it was
            // announced): tell it again, so that it settles the same way.
            self.inner()
                .directory
                .queue(Arc::from(socket_id), ours.0, true);
        }
    }

    /// Publishes this node's bindings to a node that just started, in batches, so that its
    /// directory knows them.
    pub(crate) async fn send_bindings_to(&self, newcomer: &str) {
        let bindings: Vec<(SocketId, u64)> = self
            .inner()
            .state
            .read()
            .bound
            .iter()
            .map(|(id, socket)| (id.clone(), socket.bind_stamp()))
            .collect();
        let channel = self.inner().names.inbox(newcomer);
        for chunk in bindings.chunks(BATCH) {
            let bound = chunk.iter().map(|(id, stamp)| (&**id, *stamp)).collect();
            let body = Body::Bindings {
                bound,
                unbound: Vec::new(),
            };
            if self.publish_envelope(&channel, body).await.is_err() {
                return;
            }
        }
    }
}

/// Publishes queued binding changes, in order, in batches of at most [`BATCH`].
pub(crate) async fn run_announcer(node: Weak<NodeInner>) {
    loop {
        let Some(inner) = node.upgrade() else { return };
        let wake = inner.directory.wake.clone();
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (batch, seq) = {
            let mut queue = inner.directory.queue.lock();
            let take = queue.len().min(BATCH);
            let batch: Vec<Announcement> = queue.drain(..take).collect();
            let left = queue.len() as u64;
            (batch, inner.directory.queued.load(Ordering::Acquire) - left)
        };
        if batch.is_empty() {
            drop(inner);
            woken.await;
            continue;
        }
        let node = Node::from_inner(inner);
        let mut bound = Vec::new();
        let mut unbound = Vec::new();
        for change in &batch {
            let list = if change.bound {
                &mut bound
            } else {
                &mut unbound
            };
            list.push((&*change.id, change.stamp));
        }
        let channel = node.inner().names.bridge.clone();
        // Failures are counted and logged by `publish_envelope`.
        let _ = node
            .publish_envelope(&channel, Body::Bindings { bound, unbound })
            .await;
        node.inner().directory.published.send_replace(seq);
    }
}
