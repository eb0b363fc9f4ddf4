//! How to reach ClickHouse and how to write to it.

use serde::{Deserialize, Serialize};

/// The ClickHouse fact store. Defaults match `scripts/services` (`KSA_CLICKHOUSE_URL`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// The HTTP interface, `http://host:8123`.
    pub url: String,
    /// Created at start when missing.
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Rows per INSERT: a batch is sent in INSERTs of at most this many rows, so the writer
    /// holds at most one chunk's encoding in memory whatever the batch's size.
    pub insert_chunk_rows: usize,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:18123".into(),
            database: "ksa".into(),
            user: None,
            password: None,
            insert_chunk_rows: 10_000,
        }
    }
}

impl ClickHouseConfig {
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        ClickHouseConfig { url: url.into(), database: database.into(), ..ClickHouseConfig::default() }
    }

    /// Checks what the server would otherwise reject with a less helpful message.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("url `{}` must be ClickHouse's HTTP interface, http://host:port", self.url));
        }
        if self.database.is_empty() || !self.database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("database `{}` must be a non-empty name of letters, digits and `_`", self.database));
        }
        if self.insert_chunk_rows == 0 {
            return Err("insert_chunk_rows must be at least 1".into());
        }
        Ok(())
    }

    /// The URL without a password, for messages.
    pub(crate) fn display_url(&self) -> String {
        match (self.url.find("://"), self.url.find('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &self.url[..scheme], &self.url[at + 1..]),
            _ => self.url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid() {
        assert_eq!(ClickHouseConfig::default().validate(), Ok(()));
    }

    #[test]
    fn a_database_name_that_would_need_quoting_is_refused() {
        assert!(ClickHouseConfig::new("http://h:8123", "a-b; DROP").validate().is_err());
    }

    #[test]
    fn a_native_protocol_address_is_refused() {
        assert!(ClickHouseConfig::new("tcp://h:9000", "ksa").validate().is_err());
    }

    #[test]
    fn credentials_in_the_url_are_not_shown() {
        assert_eq!(ClickHouseConfig::new("http://u:secret@h:8123", "ksa").display_url(), "http://***@h:8123");
    }
}
