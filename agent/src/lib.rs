//! The silt agent: Kafka protocol front door, write path and read path.

pub mod broker;
pub mod config;
pub mod dev;
pub mod produce;
pub mod protocol;
pub mod server;
