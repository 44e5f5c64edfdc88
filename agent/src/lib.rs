//! The silt agent: Kafka protocol front door, write path and read path.
//!
//! A produce goes `server` (framing) → `protocol::produce` (translation) →
//! `produce` (validation, the segment writer, upload, commit) and back; a
//! fetch goes `server` → `protocol::fetch` → `fetch` (index, cache, offset
//! rewrite, long poll). `topics` changes topics through the commit log,
//! `group` runs consumer groups, `error` maps every failure to its Kafka
//! code, `jobs` runs the tiering jobs (retention, compaction, object GC),
//! and `runtime` assembles an agent from the components it is given.

pub mod broker;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod error;
pub mod faults;
pub mod fetch;
pub mod group;
pub mod http;
pub mod jobs;
pub mod kafka_config;
pub mod lag;
pub mod metrics;
pub mod produce;
pub mod protocol;
pub mod rest;
pub mod runtime;
pub mod security;
pub mod server;
#[cfg(test)]
mod sim;
pub mod topics;
pub mod txn;
