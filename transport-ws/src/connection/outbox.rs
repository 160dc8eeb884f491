//! The outbox: what other tasks ask one connection to write. It is also the node's handle on
//! the connection (its [`Transport`]), so that a push reaches the queue in one step.
//!
//! One small mutex per connection guards a queue of shared frames. Senders hold it only to push
//! and never across an await; the connection's task takes the whole queue at once, and gives
//! back the emptied one. A connection that was never sent anything holds no queue allocation;
//! one that was keeps a small one (room for a frame or a few) for the next push.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use bytes::Bytes;
use crosswire_core::close_codes;
use crosswire_core::{SendError, Transport};
use parking_lot::Mutex;

/// Close code reported when a connection ends without a close frame.
pub(crate) const ABNORMAL: u16 = 1006;

/// Where a connection is in its life, as senders see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Frames are accepted.
    Open,
    /// A close frame is queued or sent: no more frames are accepted.
    Closing,
    /// Stop at once, without writing anything more.
    Killed,
}

/// Everything queued for one connection, taken by its task in one go.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Payload of the pong to send (the latest ping's), if any.
    pub(crate) pong: Option<Bytes>,
    /// Whether to send a protocol ping.
    pub(crate) ping: bool,
    /// Text frames, in order.
    pub(crate) texts: VecDeque<Bytes>,
    /// The close frame's payload (code and reason), after the texts.
    pub(crate) close: Option<Bytes>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.pong.is_none() && !self.ping && self.texts.is_empty() && self.close.is_none()
    }
}

#[derive(Debug)]
struct State {
    phase: Phase,
    queued: Batch,
    /// Payload bytes of `queued.texts`, kept as frames are pushed and taken.
    queued_bytes: usize,
    /// Whether the close frame was handed to the task already.
    close_taken: bool,
    /// The close code and reason to report, first one wins.
    close: Option<(u16, String)>,
    /// The connection task, when it waits for work.
    waker: Option<Waker>,
    /// Input may be waiting since the task last looked (see [`Taken::input`]).
    input_woken: bool,
}

/// The queue between the node (and the connection's own reader) and the connection's task.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Most text frames queued.
    capacity: usize,
    /// Most payload bytes of text frames queued (one frame is always let into an empty queue).
    max_bytes: usize,
    state: Mutex<State>,
}

/// What the connection's task takes from its outbox (see [`Outbox::take`]).
#[derive(Debug)]
pub(crate) struct Taken {
    /// The frames queued, if any.
    pub(crate) batch: Option<Batch>,
    /// Whether input may be waiting (see [`Outbox::wake_for_input`]); the task reads again only
    /// then once a read found nothing.
    pub(crate) input: bool,
}

/// The connection was killed: its task stops at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Killed;

/// What [`Outbox::park`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Park {
    /// Nothing to do: the task's waker is registered.
    Wait,
    /// Frames were queued since the task last took them.
    Output,
    /// Input may be waiting.
    Input,
    /// Stop now: the connection was killed.
    Killed,
}

impl Outbox {
    /// An open outbox holding at most `capacity` text frames and at most `max_bytes` bytes of
    /// them, except that a larger frame alone is accepted into an empty queue.
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        Outbox {
            capacity,
            max_bytes,
            state: Mutex::new(State {
                phase: Phase::Open,
                queued: Batch::default(),
                queued_bytes: 0,
                close_taken: false,
                close: None,
                waker: None,
                input_woken: false,
            }),
        }
    }

    /// Queues `frame`, waking the task. A queue that is full, in frames or in bytes, kills the
    /// connection (slow consumer); an empty queue takes any one frame.
    pub(crate) fn push_text(&self, frame: Bytes) -> Result<(), SendError> {
        let mut state = self.state.lock();
        if state.phase != Phase::Open {
            return Err(SendError::Closed);
        }
        let bytes = state.queued_bytes.saturating_add(frame.len());
        let too_many = state.queued.texts.len() >= self.capacity;
        let too_big = bytes > self.max_bytes && !state.queued.texts.is_empty();
        if too_many || too_big {
            drop(state);
            self.kill(close_codes::POLICY, "slow consumer");
            tracing::warn!(
                bound = if too_many { "frames" } else { "bytes" },
                "dropped a connection whose outbound queue was full (slow consumer)"
            );
            return Err(SendError::SlowConsumer);
        }
        state.queued_bytes = bytes;
        let texts = &mut state.queued.texts;
        if texts.capacity() == 0 {
            // Most pushes find the queue empty: room for one is what they need (and what an
            // idle connection keeps, see `take`).
            texts.reserve_exact(1);
        }
        texts.push_back(frame);
        wake(state);
        Ok(())
    }

    /// Asks for a protocol ping.
    pub(crate) fn push_ping(&self) {
        let mut state = self.state.lock();
        if state.phase == Phase::Open {
            state.queued.ping = true;
            wake(state);
        }
    }

    /// Answers a ping; replaces an unsent pong (only the latest ping needs one).
    pub(crate) fn push_pong(&self, payload: Bytes) {
        let mut state = self.state.lock();
        if state.phase != Phase::Killed && !state.close_taken {
            state.queued.pong = Some(payload);
            wake(state);
        }
    }

    /// Queues a close frame after the queued texts; later sends are refused. Only the first
    /// close counts. Returns whether this call started the close.
    pub(crate) fn close(&self, code: u16, reason: &str) -> bool {
        let mut state = self.state.lock();
        if state.phase != Phase::Open {
            return false;
        }
        state.phase = Phase::Closing;
        if state.close.is_none() {
            state.close = Some((code, reason.to_owned()));
        }
        state.queued.close = Some(close_payload(code, reason));
        // The task looks at input again, to stop handling it.
        state.input_woken = true;
        wake(state);
        true
    }

    /// Stops the connection at once, recording `code` and `reason` unless a close was
    /// recorded before.
    pub(crate) fn kill(&self, code: u16, reason: &str) {
        let mut state = self.state.lock();
        state.phase = Phase::Killed;
        if state.close.is_none() {
            state.close = Some((code, reason.to_owned()));
        }
        wake(state);
    }

    /// Refuses further sends (the connection is ending) and returns the close to report.
    pub(crate) fn finish(&self) -> (u16, String) {
        let mut state = self.state.lock();
        if state.phase == Phase::Open {
            state.phase = Phase::Closing;
        }
        state.close.take().unwrap_or((ABNORMAL, String::new()))
    }

    /// Takes everything queued, and whether input may be waiting; the task's waker is left
    /// for [`park`](Self::park) to register.
    ///
    /// `spare` is the writer's emptied queue: its allocation is kept here for the next pushes
    /// (swapped in for the queue taken, or kept while the connection waits), so that a push
    /// to an idle connection allocates nothing. Without it every push to an idle connection
    /// allocated a queue on the sender's thread that the connection's task freed on another,
    /// which glibc's per-thread caches cannot serve (~5 % of the CPU of a room fan-out).
    pub(crate) fn take(&self, spare: &mut VecDeque<Bytes>) -> Result<Taken, Killed> {
        let mut state = self.state.lock();
        if state.phase == Phase::Killed {
            return Err(Killed);
        }
        let input = std::mem::take(&mut state.input_woken);
        if state.queued.is_empty() {
            if state.queued.texts.capacity() == 0 {
                std::mem::swap(&mut state.queued.texts, spare);
            }
            return Ok(Taken { batch: None, input });
        }
        if state.queued.close.is_some() {
            state.close_taken = true;
        }
        state.queued_bytes = 0;
        let batch = std::mem::take(&mut state.queued);
        std::mem::swap(&mut state.queued.texts, spare);
        Ok(Taken {
            batch: Some(batch),
            input,
        })
    }

    /// The task's last look before it sleeps, in one lock: whether it was killed, whether
    /// frames came in that an idle writer should take (`writer_idle`), whether input may be
    /// waiting; if none of these, its waker is registered, to be woken by any of them.
    pub(crate) fn park(&self, cx: &mut Context<'_>, writer_idle: bool) -> Park {
        let mut state = self.state.lock();
        if state.phase == Phase::Killed {
            return Park::Killed;
        }
        if writer_idle && !state.queued.is_empty() {
            return Park::Output;
        }
        if std::mem::take(&mut state.input_woken) {
            return Park::Input;
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Park::Wait
    }

    /// Whether frames are still accepted, and the text frames and bytes queued now.
    pub(crate) fn status(&self) -> (bool, usize, usize) {
        let state = self.state.lock();
        (
            state.phase == Phase::Open,
            state.queued.texts.len(),
            state.queued_bytes,
        )
    }

    /// Whether frames are still accepted (no close started, not killed).
    pub(crate) fn is_open(&self) -> bool {
        self.state.lock().phase == Phase::Open
    }

    /// Wakes the connection's task to look at its input again: the socket became readable
    /// (the outbox is the waker of the task's reads, see [`Wake`]), or the node can take input
    /// again.
    pub(crate) fn wake_for_input(&self) {
        let mut state = self.state.lock();
        state.input_woken = true;
        wake(state);
    }
}

/// Wakes the task (if it waits) after releasing the lock.
fn wake(mut state: parking_lot::MutexGuard<'_, State>) {
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The outbox is the node's handle on its connection: what the node queues goes straight into it.
impl Transport for Outbox {
    fn send(&self, frame: Bytes) -> Result<(), SendError> {
        self.push_text(frame)
    }

    fn ping(&self) {
        self.push_ping();
    }

    fn close(&self, code: u16, reason: &str) {
        Outbox::close(self, code, reason);
    }

    fn terminate(&self) {
        self.kill(ABNORMAL, "terminated");
    }

    fn resume(&self) {
        self.wake_for_input();
    }

    fn is_open(&self) -> bool {
        Outbox::is_open(self)
    }
}

/// The waker of the connection task's reads: what wakes it for input is told apart from what
/// wakes it for output (see [`Taken::input`]).
impl Wake for Outbox {
    fn wake(self: Arc<Self>) {
        self.wake_for_input();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_for_input();
    }
}

/// A close frame's payload: the code, then the reason cut to fit. Codes that must never be
/// sent (1005 "no status", 1006 "abnormal", 1015 "TLS"; RFC 6455 7.4.1) give an empty payload:
/// echoing a close frame that had no code.
pub(crate) fn close_payload(code: u16, reason: &str) -> Bytes {
    if matches!(code, close_codes::NO_STATUS | close_codes::ABNORMAL | 1015) {
        return Bytes::new();
    }
    let reason = truncate_reason(reason);
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload.into()
}

/// Close reasons are limited to 123 bytes by RFC 6455; cut on a character boundary.
fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    /// Takes what is queued, as the connection's task does.
    fn take(outbox: &Outbox) -> Result<Taken, Killed> {
        outbox.take(&mut VecDeque::new())
    }

    /// Takes the queued batch and returns the lengths of its text frames.
    fn take_texts(outbox: &Outbox) -> Vec<usize> {
        match take(outbox) {
            Ok(Taken {
                batch: Some(batch), ..
            }) => batch.texts.iter().map(Bytes::len).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    /// Asserts that the slow-consumer policy was applied to `outbox`.
    fn assert_slow_consumer(outbox: &Outbox) {
        assert!(matches!(take(outbox), Err(Killed)));
        assert_eq!(outbox.push_text(frame(1)), Err(SendError::Closed));
        assert_eq!(outbox.finish(), (1008, "slow consumer".to_owned()));
    }

    #[test]
    fn a_push_past_the_byte_bound_kills_with_1008_slow_consumer() {
        let outbox = Outbox::new(1024, 100);
        assert_eq!(outbox.push_text(frame(60)), Ok(()));
        assert_eq!(outbox.push_text(frame(40)), Ok(()), "the bound itself fits");
        assert_eq!(
            outbox.push_text(frame(1)),
            Err(SendError::SlowConsumer),
            "one byte more does not"
        );
        assert_slow_consumer(&outbox);
    }

    #[test]
    fn taking_the_batch_frees_its_bytes() {
        let outbox = Outbox::new(1024, 100);
        for _ in 0..3 {
            assert_eq!(outbox.push_text(frame(70)), Ok(()));
            assert_eq!(outbox.push_text(frame(30)), Ok(()));
            assert_eq!(take_texts(&outbox), [70, 30]);
        }
        assert!(
            matches!(take(&outbox), Ok(Taken { batch: None, .. })),
            "nothing left queued"
        );
        assert_eq!(outbox.push_text(frame(100)), Ok(()));
        assert_eq!(take_texts(&outbox), [100]);
    }

    #[test]
    fn an_empty_queue_takes_one_oversized_frame_and_refuses_the_next_push() {
        let outbox = Outbox::new(1024, 100);
        assert_eq!(outbox.push_text(frame(500)), Ok(()));
        assert_eq!(outbox.push_text(frame(1)), Err(SendError::SlowConsumer));
        assert_slow_consumer(&outbox);

        // Once the task took it, the queue is empty again and the next push goes in.
        let outbox = Outbox::new(1024, 100);
        assert_eq!(outbox.push_text(frame(500)), Ok(()));
        assert_eq!(take_texts(&outbox), [500]);
        assert_eq!(outbox.push_text(frame(1)), Ok(()));
    }

    #[test]
    fn the_frame_bound_still_applies_under_the_byte_bound() {
        let outbox = Outbox::new(2, 1 << 20);
        assert_eq!(outbox.push_text(frame(1)), Ok(()));
        assert_eq!(outbox.push_text(frame(1)), Ok(()));
        assert_eq!(outbox.push_text(frame(1)), Err(SendError::SlowConsumer));
        assert_slow_consumer(&outbox);
    }

    /// Counts the wake-ups of the task it stands for.
    #[derive(Default)]
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl CountingWaker {
        fn count(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_task_is_woken_only_once_parked_and_what_came_before_is_found_by_park() {
        let outbox = Outbox::new(1024, 1 << 20);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);

        // While the task runs (never parked yet), pushes and input do not wake it: its last
        // look finds them, in order: output first, then input, then nothing.
        assert_eq!(outbox.push_text(frame(1)), Ok(()));
        outbox.wake_for_input();
        assert_eq!(
            outbox.park(&mut cx, false),
            Park::Input,
            "the writer is busy"
        );
        assert_eq!(outbox.park(&mut cx, true), Park::Output);
        assert_eq!(take_texts(&outbox), [1]);
        assert_eq!(outbox.park(&mut cx, true), Park::Wait);
        assert_eq!(counter.count(), 0);

        // Parked: the first push wakes it, once; what follows before it runs again does not.
        assert_eq!(outbox.push_text(frame(2)), Ok(()));
        assert_eq!(outbox.push_text(frame(3)), Ok(()));
        outbox.wake_for_input();
        assert_eq!(counter.count(), 1);
        let taken = take(&outbox).expect("not killed");
        assert!(taken.input, "the input wake-up is reported with the take");
        assert_eq!(taken.batch.map(|b| b.texts.len()), Some(2));
        assert_eq!(outbox.park(&mut cx, true), Park::Wait);

        // Input and a kill wake a parked task too.
        outbox.wake_for_input();
        assert_eq!(counter.count(), 2);
        assert_eq!(outbox.park(&mut cx, true), Park::Input);
        assert_eq!(outbox.park(&mut cx, true), Park::Wait);
        outbox.kill(ABNORMAL, "");
        assert_eq!(counter.count(), 3);
        assert_eq!(outbox.park(&mut cx, true), Park::Killed);
    }
}
