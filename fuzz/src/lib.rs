//! Shared pieces of crosswire's fuzz targets (`fuzz_targets/`): how an input's first bytes
//! choose the reader's limits and read sizes, an allocation tracker, a client frame builder for
//! seeds, and the fastwebsockets side of the differential target.

pub mod alloc_track;
pub mod frames;
pub mod normalize;
pub mod oracle;
pub mod plan;
