//! Benchmarks of the domain core and the generated traffic that pipeline benchmarks replay.

pub mod traffic;
