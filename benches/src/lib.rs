//! Benchmarks of the domain core and the pipeline; the traffic they replay comes from the
//! binary's own generator.

pub use ksa_app::traffic;
