//! The `keycrm-analytics` binary's parts: layered configuration, the offline analyzer, the
//! all-in-one server and project administration.

pub mod access;
pub mod analyzer;
pub mod apart;
pub mod archive;
pub mod background;
pub mod config;
pub mod enrich;
pub mod metrics;
pub mod projects;
pub mod redact;
pub mod serve;
pub mod simulate;
pub mod stores;
pub mod traffic;
