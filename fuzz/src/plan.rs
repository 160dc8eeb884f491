//! The layout of a frame target's input: five header bytes that choose the message limit, the
//! read sizes, how many bytes arrive with the upgrade request and after which messages the
//! handler pauses reading, then the byte stream.
//!
//! ```text
//! [limit][chunking][early][seed][pauses][stream ...]
//! ```
//!
//! `chunking`: low nibble, a read size; 0x10, sizes vary (from `seed`) between 0 (a `Pending`
//! read) and that size; 0x20, the first `early` bytes come with the upgrade request.
//! `pauses`: the handler pauses after message `i` when bit `i % 8` is set.

/// Message limits a target picks from (`limit` byte, modulo the length): small ones reach the
/// size checks with small inputs, 8 KiB neighbours meet the reader's stack buffer.
pub const LIMITS: [usize; 12] = [
    0,
    1,
    7,
    125,
    126,
    200,
    1000,
    8_000,
    9_000,
    20_000,
    65_536,
    1 << 20,
];

/// Read sizes a target picks from (low nibble of `chunking`).
const SIZES: [usize; 16] = [
    usize::MAX,
    1,
    2,
    3,
    5,
    13,
    64,
    127,
    1000,
    4096,
    8191,
    8192,
    8193,
    9000,
    16384,
    65536,
];

/// What the header bytes chose.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The message limit.
    pub max_message: usize,
    /// Read sizes, in turn; 0 makes a read return `Pending` once.
    pub chunks: Vec<usize>,
    /// The bytes that arrive with the upgrade request.
    pub early: &'a [u8],
    /// The rest of the stream.
    pub stream: &'a [u8],
    /// Pause pattern for [`Feed::pauses`](crosswire_ws::fuzzing::Feed).
    pub pauses: u64,
}

/// The header length.
pub const HEADER: usize = 5;

impl<'a> Plan<'a> {
    /// Splits `input`; `None` when it is shorter than the header.
    pub fn parse(input: &'a [u8]) -> Option<Self> {
        let (&[limit, chunking, early, seed, pauses], rest) =
            input.split_first_chunk::<HEADER>()?;
        let size = SIZES[usize::from(chunking & 0x0F)];
        let chunks = if chunking & 0x10 == 0 {
            vec![size]
        } else {
            // Sizes from 0 (a `Pending`) to `size`, from a small xorshift seeded by `seed`.
            let mut state = u32::from(seed) | 0x100;
            (0..16)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state as usize) % size.saturating_add(1).min(1 << 20)
                })
                .collect()
        };
        let early_len = if chunking & 0x20 == 0 {
            0
        } else {
            usize::from(early).min(rest.len())
        };
        let (early, stream) = rest.split_at(early_len);
        Some(Plan {
            max_message: LIMITS[usize::from(limit) % LIMITS.len()],
            chunks,
            early,
            stream,
            pauses: u64::from_ne_bytes([pauses; 8]),
        })
    }

    /// The feed for crosswire's reader.
    pub fn feed(&self) -> crosswire_ws::fuzzing::Feed<'_> {
        crosswire_ws::fuzzing::Feed {
            early_bytes: self.early,
            input: self.stream,
            chunks: &self.chunks,
            pauses: self.pauses,
        }
    }

    /// The header that [`Plan::parse`] reads back as limit `LIMITS[limit]`, read sizes
    /// `chunking`, no early bytes, and pauses after the messages set in `pauses`.
    pub fn header(limit: u8, chunking: u8, pauses: u8) -> [u8; HEADER] {
        [limit, chunking & 0x1F, 0, 0x5A, pauses]
    }
}
