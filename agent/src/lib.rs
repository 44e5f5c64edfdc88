//! The silt agent: Kafka protocol front door, write path and read path.

pub mod broker;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod group;
pub mod http;
pub mod membership;
pub mod produce;
pub mod producer_ids;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod topic_config;
