//! Bytes at rest: the segment object format, record batch validation, and
//! reading objects through the block cache, and the background jobs that
//! keep the bucket and the index small (retention, compaction, object GC).

pub mod batch;
pub mod cache;
pub mod clock;
pub mod jobs;
pub mod metrics;
pub mod records;
pub mod segment;
pub mod store;

pub use cache::{BlockCache, CacheError, CacheStats, FoyerCache, NoCache, ObjectReader, ReadError};
