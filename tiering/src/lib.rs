//! Bytes at rest: the segment object format, record batch validation, and
//! reading objects through the block cache.

pub mod batch;
pub mod cache;
pub mod clock;
pub mod segment;
pub mod store;

pub use cache::{BlockCache, CacheError, FoyerCache, NoCache, ObjectReader, ReadError};
