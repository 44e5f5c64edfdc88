//! Wall-clock time (defined in `silt_tiering::clock`, which the jobs share).

pub use silt_tiering::clock::*;
