//! The `keycrm-analytics` binary's parts: layered configuration and the offline analyzer.

pub mod analyzer;
pub mod config;
