//! Event listeners with `on` / `once` / `off` and tags, shared by client events, cross-server
//! events and system events.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use foldhash::{HashMap, HashMapExt};
use parking_lot::RwLock;
use smallvec::SmallVec;

/// A boxed handler future.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
/// The futures of the listeners of one event, as [`Listeners::start`] made them: inline for
/// the usual single listener, so that starting it allocates nothing but its future.
pub(crate) type Started = SmallVec<[BoxFuture; 1]>;
type Handler<A> = Arc<dyn Fn(A) -> BoxFuture + Send + Sync>;

/// What a handler may return: nothing, or a `Result` whose error is reported (logged with the
/// event's name, at most one line a second, and counted in
/// [`MetricsSnapshot::handler_errors`](crate::MetricsSnapshot::handler_errors) for a node's
/// handlers) instead of being dropped with `let _ =`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), crosswire_core::Error> {
/// let node = crosswire_core::Node::builder().build().await?;
/// node.on("save", |ev| async move {
///     let score: u32 = ev.json()?; // a payload that is not a number is reported
///     ev.reply(&(score + 1))?;
///     Ok::<_, crosswire_core::Error>(())
/// });
/// # Ok(()) }
/// ```
pub trait HandlerResult: Send + 'static {
    /// The error to report, if any.
    fn into_error(self) -> Option<String>;
}

impl HandlerResult for () {
    fn into_error(self) -> Option<String> {
        None
    }
}

impl<E: fmt::Display + Send + 'static> HandlerResult for Result<(), E> {
    fn into_error(self) -> Option<String> {
        self.err().map(|error| error.to_string())
    }
}

/// Called with the event name and the error of a handler that failed.
pub(crate) type ErrorSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What sibling registries share: listener ids, and where handler errors go.
pub(crate) struct Registry {
    next_id: AtomicU64,
    on_error: Option<ErrorSink>,
    error_log: crate::metrics::LogLimiter,
}

impl Registry {
    pub(crate) fn new(on_error: Option<ErrorSink>) -> Arc<Self> {
        Arc::new(Registry {
            next_id: AtomicU64::new(0),
            on_error,
            error_log: crate::metrics::LogLimiter::new(),
        })
    }

    fn report(&self, event: &str, error: &str) {
        if let Some(on_error) = &self.on_error {
            on_error(event, error);
        }
        if let Some(held_back) = self.error_log.allow() {
            tracing::warn!(
                event,
                error,
                held_back,
                "an event handler returned an error"
            );
        }
    }
}

/// Identifies one registered listener, for [`Off::Id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// Which listeners of an event to remove.
#[derive(Debug, Clone, Copy)]
pub enum Off<'a> {
    /// Every listener of the event.
    All,
    /// The listeners registered with this tag.
    Tag(&'a str),
    /// The one listener returned by `on` / `once`.
    Id(ListenerId),
}

impl From<ListenerId> for Off<'_> {
    fn from(id: ListenerId) -> Self {
        Off::Id(id)
    }
}

impl<'a> From<&'a str> for Off<'a> {
    fn from(tag: &'a str) -> Self {
        Off::Tag(tag)
    }
}

/// How a listener is registered: optionally tagged, optionally one-shot.
#[derive(Debug, Clone, Default)]
pub struct Listen {
    pub(crate) tag: Option<Arc<str>>,
    pub(crate) once: bool,
}

impl Listen {
    /// A plain listener.
    pub fn new() -> Self {
        Listen::default()
    }
    /// Tags the listener so `off(event, Off::Tag(tag))` removes it.
    pub fn tag(mut self, tag: impl Into<Arc<str>>) -> Self {
        self.tag = Some(tag.into());
        self
    }
    /// Removes the listener after its first call.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }
}

/// An application's handler with where its errors are reported.
struct Reported<F> {
    handler: F,
    registry: Arc<Registry>,
    event: Arc<str>,
}

struct Entry<A> {
    id: ListenerId,
    tag: Option<Arc<str>>,
    once: bool,
    handler: Handler<A>,
}

struct Slot<A> {
    entries: Vec<Entry<A>>,
    has_once: bool,
}

/// Listeners keyed by event name, each called with a clone of the event's argument.
///
/// The node keeps its client, cross-server and system events in these; other parts of
/// crosswire (the client connector) reuse them, so `on` / `once` / `off` and tags behave the
/// same everywhere. Handlers are closures returning a future; [`Listeners::emit`] polls each
/// one once at once, in registration order, and spawns the rest of those that must wait.
pub struct Listeners<A> {
    slots: RwLock<HashMap<Arc<str>, Slot<A>>>,
    registry: Arc<Registry>,
}

impl<A: Clone + Send + 'static> Default for Listeners<A> {
    fn default() -> Self {
        Listeners::new(Registry::new(None))
    }
}

impl<A: Clone + Send + 'static> Listeners<A> {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Listeners {
            slots: RwLock::new(HashMap::new()),
            registry,
        }
    }

    /// An empty registry whose [`ListenerId`]s never collide with `self`'s, for several
    /// registries behind one API.
    pub fn sibling<B: Clone + Send + 'static>(&self) -> Listeners<B> {
        Listeners::new(self.registry.clone())
    }

    /// Registers `handler` for `event`. A handler returns `()` or a `Result` (see
    /// [`HandlerResult`]).
    pub fn add<F, Fut, R>(&self, event: &str, listen: Listen, handler: F) -> ListenerId
    where
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerResult,
    {
        let id = ListenerId(self.registry.next_id.fetch_add(1, Ordering::Relaxed));
        // The handler is called inside the future, so a listener's synchronous part runs when
        // its future is first polled: listeners run in registration order, each after the
        // previous one's first poll.
        let reported = Arc::new(Reported {
            handler,
            registry: self.registry.clone(),
            event: Arc::from(event),
        });
        let handler: Handler<A> = Arc::new(move |arg| {
            let reported = reported.clone();
            Box::pin(async move {
                if let Some(error) = (reported.handler)(arg).await.into_error() {
                    reported.registry.report(&reported.event, &error);
                }
            })
        });
        let mut slots = self.slots.write();
        let slot = slots.entry(Arc::from(event)).or_insert_with(|| Slot {
            entries: Vec::new(),
            has_once: false,
        });
        slot.has_once |= listen.once;
        slot.entries.push(Entry {
            id,
            tag: listen.tag,
            once: listen.once,
            handler,
        });
        id
    }

    /// Removes listeners; returns how many were removed.
    pub fn remove(&self, event: &str, off: Off<'_>) -> usize {
        let mut slots = self.slots.write();
        let Some(slot) = slots.get_mut(event) else {
            return 0;
        };
        let before = slot.entries.len();
        match off {
            Off::All => slot.entries.clear(),
            Off::Tag(tag) => slot.entries.retain(|e| e.tag.as_deref() != Some(tag)),
            Off::Id(id) => slot.entries.retain(|e| e.id != id),
        }
        let removed = before - slot.entries.len();
        if slot.entries.is_empty() {
            slots.remove(event);
        }
        removed
    }

    /// Whether any listener exists for `event`.
    pub fn has(&self, event: &str) -> bool {
        self.slots.read().contains_key(event)
    }

    /// The registered name of `event` when a listener exists for it: shared, so that an
    /// event's argument can name it without a copy of its own.
    pub(crate) fn shared_name(&self, event: &str) -> Option<Arc<str>> {
        self.slots
            .read()
            .get_key_value(event)
            .map(|(name, _)| name.clone())
    }

    /// Runs every listener of `event` with `arg` (see [`Listeners`]); returns how many ran.
    /// Must be called inside a Tokio runtime.
    pub fn emit(&self, event: &str, arg: A) -> usize {
        let futures = self.start(event, arg);
        let count = futures.len();
        drive_all(futures);
        count
    }

    /// Starts every listener of `event` with `arg` and returns their futures (empty when none
    /// listen). One-shot listeners are removed atomically, so each fires at most once.
    pub(crate) fn start(&self, event: &str, arg: A) -> Started {
        let slots = self.slots.read();
        match slots.get(event) {
            None => Started::new(),
            // Making a handler's future runs none of its code, so it can be done under the
            // read lock, without copying the handler list first.
            Some(slot) if !slot.has_once => call_each(slot.entries.iter().map(|e| &e.handler), arg),
            Some(_) => {
                drop(slots);
                call_each(self.take_with_once(event).iter(), arg)
            }
        }
    }

    fn take_with_once(&self, event: &str) -> Vec<Handler<A>> {
        let mut slots = self.slots.write();
        let Some(slot) = slots.get_mut(event) else {
            return Vec::new();
        };
        let handlers = slot.entries.iter().map(|e| e.handler.clone()).collect();
        slot.entries.retain(|e| !e.once);
        slot.has_once = false;
        if slot.entries.is_empty() {
            slots.remove(event);
        }
        handlers
    }
}

/// Calls each handler with a clone of `arg`, the last one with `arg` itself (the usual single
/// listener gets the argument without a copy).
fn call_each<'h, A: Clone + 'static>(
    handlers: impl Iterator<Item = &'h Handler<A>>,
    arg: A,
) -> Started {
    let mut handlers = handlers.peekable();
    let mut started = Started::new();
    while let Some(handler) = handlers.next() {
        if handlers.peek().is_none() {
            started.push(handler(arg));
            break;
        }
        started.push(handler(arg.clone()));
    }
    started
}

/// Runs a handler future: polled once right here, so its synchronous part runs in the order
/// events arrived (as in the JavaScript package), then spawned if it has to wait, in the
/// caller's span (a connection's, a cross-server event's). A panicking handler is logged and
/// contained.
pub(crate) fn drive(mut future: BoxFuture) {
    if !poll_once(&mut future) {
        tokio::spawn(tracing::Instrument::in_current_span(future));
    }
}

/// Polls a handler future once, right here; `true` when it is done (or panicked: logged and
/// contained), `false` when it has to wait.
pub(crate) fn poll_once(future: &mut BoxFuture) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
        Ok(Poll::Ready(())) => true,
        Ok(Poll::Pending) => false,
        Err(_) => {
            tracing::error!("an event handler panicked; the event was abandoned");
            true
        }
    }
}

/// Runs every future with [`drive`].
pub(crate) fn drive_all(futures: Started) {
    futures.into_iter().for_each(drive);
}

impl<A> std::fmt::Debug for Listeners<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("events", &self.slots.read().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counter(
        listeners: &Listeners<u32>,
        event: &str,
        listen: Listen,
    ) -> (ListenerId, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let id = listeners.add(event, listen, move |n| {
            c.fetch_add(n as usize, Ordering::SeqCst);
            async {}
        });
        (id, count)
    }

    #[tokio::test]
    async fn on_once_off_and_tags() {
        let l = Listeners::<u32>::default();
        let (id_a, a) = counter(&l, "e", Listen::new());
        let (_, once) = counter(&l, "e", Listen::new().once());
        let (_, tagged) = counter(&l, "e", Listen::new().tag("t"));
        drive_all(l.start("e", 1));
        drive_all(l.start("e", 1));
        assert_eq!(a.load(Ordering::SeqCst), 2);
        assert_eq!(once.load(Ordering::SeqCst), 1, "once fires once");
        assert_eq!(tagged.load(Ordering::SeqCst), 2);
        assert_eq!(l.remove("e", Off::Tag("t")), 1);
        assert_eq!(l.remove("e", Off::Id(id_a)), 1);
        assert!(!l.has("e"), "empty events are removed");
        assert!(l.start("e", 1).is_empty());
        assert_eq!(l.remove("missing", Off::All), 0);
    }

    #[tokio::test]
    async fn a_handler_error_is_reported_with_its_event() {
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let l = Listeners::<u32>::new(Registry::new(Some(Arc::new(
            move |event: &str, error: &str| {
                sink.lock().push(format!("{event}: {error}"));
            },
        ))));
        l.add("e", Listen::new(), |n| async move {
            if n > 1 {
                Err(format!("{n} is too many"))
            } else {
                Ok(())
            }
        });
        drive_all(l.start("e", 1));
        drive_all(l.start("e", 2));
        assert_eq!(*seen.lock(), ["e: 2 is too many"]);
    }

    #[tokio::test]
    async fn a_panicking_handler_is_contained() {
        let l = Listeners::<u32>::default();
        l.add::<_, _, ()>("e", Listen::new(), |_| async { panic!("boom") });
        drive_all(l.start("e", 1));
    }
}
