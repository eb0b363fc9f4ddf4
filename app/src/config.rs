//! One configuration, layered: embedded defaults ← TOML file ← `KSA__SECTION__KEY` environment
//! variables ← command-line flags. The defaults run everything embedded in `./data`.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

mod bus;
mod facts;

pub use bus::{BusKind, KafkaSection};
pub use facts::{FactsConfig, FactsKind, ParquetSection};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "keycrm-analytics.toml";
pub const ENV_PREFIX: &str = "KSA__";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where embedded mode keeps its SQLite file, outbox and Parquet facts.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub server: ServerConfig,
    pub bus: BusConfig,
    pub processor: ProcessorSection,
    pub enricher: EnricherSection,
    pub facts: FactsConfig,
    pub auth: AuthSection,
    pub live: LiveSection,
    pub log: LogConfig,
    /// `GET /metrics` (docs/operations.md).
    pub metrics: crate::metrics::MetricsSection,
    /// The payload archive and the audit horizon (docs/operations.md).
    pub retention: crate::archive::RetentionSection,
}

/// The live feed of the query API (`GET /api/stream/orders`, docs/live.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSection {
    /// Seconds between heartbeats (comment lines) on idle streams.
    pub heartbeat_seconds: u64,
    /// Events a stream may fall behind by before it gets `invalidate` and is closed; also the
    /// most a resume replays.
    pub client_buffer: usize,
    /// Streams one user may have open at once.
    pub max_streams_per_user: usize,
    /// Streams open at once on one query-API process.
    pub max_streams: usize,
}

impl Default for LiveSection {
    fn default() -> Self {
        let defaults = ksa_query_api::live::LiveConfig::default();
        LiveSection {
            heartbeat_seconds: defaults.heartbeat.as_secs(),
            client_buffer: defaults.client_buffer,
            max_streams_per_user: defaults.max_streams_per_user,
            max_streams: defaults.max_streams,
        }
    }
}

/// Sessions, and what `run` and `query-api` do about logins (docs/access.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// The key that signs session cookies, as 64 hex digits; the same on every query-API
    /// process. Unset: the key file `session.key` in the data dir, created (mode 0600) on
    /// first use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Hours a login lasts.
    pub session_hours: u64,
    /// Minutes a rotated webhook secret keeps working.
    pub secret_grace_minutes: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection { session_key: None, session_hours: 8, secret_grace_minutes: 10 }
    }
}

/// The enricher (docs/enricher.md): KeyCRM API calls, their limits, and its schedules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnricherSection {
    /// Run the enricher inside `keycrm-analytics run`.
    pub enabled: bool,
    /// The AES-256 key that encrypts API tokens at rest, as 64 hex digits. Unset: the key file
    /// `secret.key` in the data dir, created (mode 0600) on first use. Set it in distributed
    /// mode, the same on every instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_key: Option<String>,
    /// Requests per minute per project for projects without a rate of their own (KeyCRM allows
    /// about 60; one source says 20). Between 1 and 600.
    pub rate_per_minute: u32,
    /// Requests that may go back to back before the rate applies.
    pub burst: u32,
    /// Seconds one request may take.
    pub request_timeout_seconds: u64,
    /// Attempts per API call (429, 5xx, timeouts, connection errors are retried).
    pub call_attempts: u32,
    /// Failed calls in a row that pause a project's calls (circuit breaker), and for how long.
    pub circuit_failures: u32,
    pub circuit_open_seconds: u64,
    /// Failed fetches of an order's items before it is dead-lettered.
    pub fetch_attempts: u32,
    /// Wait after the first failed fetch; doubled per attempt up to `retry_max_seconds`.
    pub retry_base_seconds: u64,
    pub retry_max_seconds: u64,
    /// Minutes between status dictionary syncs.
    pub status_refresh_minutes: u64,
    /// Minutes between reconciliation passes; 0 turns reconciliation off.
    pub reconcile_minutes: u64,
    /// How far back the first reconciliation pass looks, in minutes.
    pub reconcile_lookback_minutes: u64,
    /// An order entering this status group gets its items fetched again; 0 = never.
    pub refetch_items_on_group: u16,
}

impl Default for EnricherSection {
    fn default() -> Self {
        EnricherSection {
            enabled: true,
            secrets_key: None,
            rate_per_minute: 60,
            burst: 1,
            request_timeout_seconds: 30,
            call_attempts: 5,
            circuit_failures: 5,
            circuit_open_seconds: 120,
            fetch_attempts: 10,
            retry_base_seconds: 30,
            retry_max_seconds: 6 * 3600,
            status_refresh_minutes: 60,
            reconcile_minutes: 15,
            reconcile_lookback_minutes: 120,
            refetch_items_on_group: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `outbox` (`bus_log` in its own SQLite file beside the state database, or in the PostgreSQL
    /// state database) or `kafka`.
    pub kind: BusKind,
    /// Partitions per topic; one processor runs per partition. Unset: 1 on SQLite (one writer
    /// at a time, so more gain nothing) and [`POSTGRES_PARTITIONS`] on PostgreSQL (commits in
    /// parallel). Keep it fixed once events have arrived: an order's partition follows from it.
    pub partitions: Option<u32>,
    /// Webhooks waiting to be made durable before new ones get 503.
    pub queue_capacity: usize,
    /// Hours consumed records stay in the outbox.
    pub retention_hours: u64,
    /// Days the outbox remembers a record's idempotency key (a repeat within them is answered
    /// `duplicate`; a later one is appended and dropped by the processor as a known event).
    pub idempotency_days: u32,
    pub kafka: KafkaSection,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::Outbox,
            partitions: None,
            queue_capacity: 4096,
            retention_hours: 24,
            idempotency_days: 7,
            kafka: KafkaSection::default(),
        }
    }
}

/// Partitions per topic on PostgreSQL when `bus.partitions` is unset: enough processors to
/// keep two cores busy (BENCHMARKS.md).
pub const POSTGRES_PARTITIONS: u32 = 4;

impl BusConfig {
    /// The partitions to use with a SQLite (`postgres == false`) or PostgreSQL state database.
    pub fn partitions_for(&self, postgres: bool) -> u32 {
        match self.partitions {
            Some(partitions) => partitions.max(1),
            None if postgres => POSTGRES_PARTITIONS,
            None => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorSection {
    /// Records per micro-batch at most. A processor that keeps up reads what has arrived, so
    /// only a backlog makes batches this large; larger batches write each busy page once for more
    /// events (BENCHMARKS.md).
    pub batch_records: usize,
    /// Orders whose events stay cached between batches.
    pub cache_orders: usize,
    /// Milliseconds a short batch waits for more records (from its oldest record's arrival);
    /// fewer, larger transactions for a little latency. 0 processes records at once.
    pub linger_ms: u64,
    /// Milliseconds between batch reads while a burst lasts (a read found 100 records or more):
    /// batches grow with the load, so each transaction and fact file covers more events. 0: only
    /// `linger_ms` applies.
    pub burst_linger_ms: u64,
    /// How many nice steps below ingest `run`'s processors run (0–19; 0: the same priority).
    /// Under a burst the CPU goes to answering webhooks first, and the processors use what is
    /// left (BENCHMARKS.md: 10 let them fall 3–5 s behind a 60 s burst on two cores, 5 kept
    /// them within 2 s).
    pub nice: i32,
}

impl Default for ProcessorSection {
    fn default() -> Self {
        ProcessorSection {
            batch_records: 50_000,
            cache_orders: 200_000,
            linger_ms: 50,
            burst_linger_ms: ksa_processor::DEFAULT_BURST_LINGER_MS,
            nice: 5,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` or `sqlite://…`; unset means `state.db` in the data dir.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The query API keeps callers, projects and applied revisions in memory while it hears of
    /// every change to them (PostgreSQL: `LISTEN`; SQLite: a count of changes read every
    /// 100 ms). Off where LISTEN hears nothing (a connection pooler in transaction mode): then
    /// each request reads them afresh.
    pub keep_callers_in_memory: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, keep_callers_in_memory: true }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    /// The address people and KeyCRM reach this deployment at (`https://ksa.example.com`): the
    /// base of every webhook URL shown, and with https, session cookies are `Secure`. Unset:
    /// `http://` and the listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Proxies (addresses or CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// Connections served at once; further ones wait.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (also between kept-alive requests).
    pub header_read_timeout_seconds: u64,
    /// Seconds a client has to send a request's body after its headers.
    pub body_read_timeout_seconds: u64,
    /// Serve the web UI from this folder instead of the copy built into the binary (to work on
    /// the UI without rebuilding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_dir: Option<PathBuf>,
}

impl ServerConfig {
    /// `public_url`, else `http://` and the listen address (without a trailing slash).
    pub fn public_url(&self, listen: &str) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{listen}")).trim_end_matches('/').to_owned()
    }

    /// Where the web UI's files come from.
    pub fn ui(&self) -> ksa_query_api::ui::UiSource {
        match &self.ui_dir {
            Some(dir) => ksa_query_api::ui::UiSource::Folder(dir.clone()),
            None => ksa_query_api::ui::UiSource::Embedded,
        }
    }

    /// The limits every service's server applies.
    pub fn limits(&self) -> anyhow::Result<ksa_edge::Limits> {
        let mut proxies = Vec::new();
        for proxy in &self.trusted_proxies {
            proxies.push(
                ksa_edge::Cidr::parse(proxy).with_context(|| format!("server.trusted_proxies: {proxy:?} is not an address or CIDR"))?,
            );
        }
        Ok(ksa_edge::Limits {
            max_connections: self.max_connections.max(1),
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_seconds.max(1)),
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout_seconds.max(1)),
            trusted_proxies: ksa_edge::TrustedProxies(proxies),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `ksa_app=debug,info`.
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            database: DatabaseConfig::default(),
            server: ServerConfig::default(),
            bus: BusConfig::default(),
            processor: ProcessorSection::default(),
            enricher: EnricherSection::default(),
            facts: FactsConfig::default(),
            auth: AuthSection::default(),
            live: LiveSection::default(),
            log: LogConfig::default(),
            metrics: crate::metrics::MetricsSection::default(),
            retention: crate::archive::RetentionSection::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            trusted_proxies: Vec::new(),
            max_connections: 1024,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 30,
            ui_dir: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

impl Config {
    /// Loads defaults, then `file` (or `keycrm-analytics.toml` when present), then the
    /// environment variables in `env`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Config> {
        let mut table = toml::Table::try_from(Config::default()).context("serializing the default configuration")?;
        let file = match file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            let overlay: toml::Table = toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
            merge(&mut table, overlay);
        }
        let mut overrides: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        overrides.sort();
        for (name, value) in overrides {
            apply_env(&mut table, &name, &value)?;
        }
        let source = file.map_or_else(|| "defaults and environment".to_string(), |p| p.display().to_string());
        let config = Config::deserialize(toml::Value::Table(table)).with_context(|| format!("configuration from {source}"))?;
        if !(1..=600).contains(&config.enricher.rate_per_minute) {
            bail!(
                "configuration from {source}: enricher.rate_per_minute must be between 1 and 600, not {}",
                config.enricher.rate_per_minute
            );
        }
        let lowest = crate::background::LOWEST;
        if !(0..=lowest).contains(&config.processor.nice) {
            bail!("configuration from {source}: processor.nice must be between 0 and {lowest}, not {}", config.processor.nice);
        }
        Ok(config)
    }

    /// The state database: the configured URL, else a SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("state.db").display()))
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `KSA__SERVER__LISTEN=0.0.0.0:80` sets `server.listen`. The value takes the type of the
/// setting it replaces; a name that matches no setting is an error, not silence.
fn apply_env(table: &mut toml::Table, name: &str, raw: &str) -> anyhow::Result<()> {
    let path: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
    let (leaf, parents) = path.split_last().context("empty variable name")?;
    let mut node = &mut *table;
    for part in parents {
        node = match node.get_mut(part) {
            Some(toml::Value::Table(t)) => t,
            _ => bail!("{name}: there is no configuration section `{part}`"),
        };
    }
    let value = match node.get(leaf) {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.trim().parse().with_context(|| format!("{name}: {raw:?} is not an integer"))?)
        }
        Some(toml::Value::Float(_)) => toml::Value::Float(raw.trim().parse().with_context(|| format!("{name}: {raw:?} is not a number"))?),
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(raw.trim().parse().with_context(|| format!("{name}: {raw:?} is not true or false"))?)
        }
        Some(toml::Value::Table(_)) => bail!("{name}: `{leaf}` is a section, not a setting"),
        // A list from a comma-separated value: `KSA__SERVER__TRUSTED_PROXIES=10.0.0.0/8,::1`.
        Some(toml::Value::Array(_)) => {
            toml::Value::Array(raw.split(',').map(str::trim).filter(|v| !v.is_empty()).map(|v| toml::Value::String(v.to_owned())).collect())
        }
        _ => toml::Value::String(raw.to_string()),
    };
    // Optional settings are absent from the defaults, so an unknown name cannot be told from
    // them here: reading the setting on its own does, and lets the error name the variable. An
    // absent optional setting that reads as an integer is tried as one first (`bus.partitions`).
    let probe = |value: &toml::Value| {
        let mut probe = toml::Value::Table(toml::Table::from_iter([(leaf.clone(), value.clone())]));
        for part in parents.iter().rev() {
            probe = toml::Value::Table(toml::Table::from_iter([(part.clone(), probe)]));
        }
        Config::deserialize(probe).map_err(|err| anyhow!("{name}: {}", err.message()))
    };
    let integer = match (&value, raw.trim().parse::<i64>()) {
        (toml::Value::String(_), Ok(number)) => Some(toml::Value::Integer(number)).filter(|v| probe(v).is_ok()),
        _ => None,
    };
    let value = match integer {
        Some(integer) => integer,
        None => {
            probe(&value)?;
            value
        }
    };
    node.insert(leaf.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn partitions_default_by_database_and_take_an_environment_override() {
        let defaults = Config::load(None, env(&[])).unwrap();
        assert_eq!(defaults.bus.partitions_for(false), 1);
        assert_eq!(defaults.bus.partitions_for(true), POSTGRES_PARTITIONS);
        let set = Config::load(None, env(&[("KSA__BUS__PARTITIONS", "8")])).unwrap();
        assert_eq!((set.bus.partitions_for(false), set.bus.partitions_for(true)), (8, 8));
        let err = format!("{:#}", Config::load(None, env(&[("KSA__BUS__PARTITIONS", "many")])).unwrap_err());
        assert!(err.contains("KSA__BUS__PARTITIONS"), "{err}");
    }

    #[test]
    fn defaults_run_embedded_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        std::fs::write(&missing, "").unwrap();
        let config = Config::load(Some(&missing), env(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.server.listen, "127.0.0.1:8080");
        assert_eq!(config.database_url(), "sqlite://./data/state.db");
    }

    #[test]
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ksa.toml");
        std::fs::write(&file, "data_dir = \"/var/lib/ksa\"\n[server]\nlisten = \"0.0.0.0:9000\"\n[log]\nformat = \"json\"\n").unwrap();
        let config = Config::load(
            Some(&file),
            env(&[("KSA__SERVER__LISTEN", "127.0.0.1:7000"), ("KSA__DATABASE__URL", "postgres://x/y"), ("OTHER", "1")]),
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/ksa"));
        assert_eq!(config.server.listen, "127.0.0.1:7000");
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.database_url(), "postgres://x/y");
    }

    /// Every key of `table`, as `section.key` paths.
    fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = format!("{prefix}{key}");
            match value {
                toml::Value::Table(inner) => keys(inner, &format!("{path}."), out),
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn the_distributed_example_shows_every_setting_and_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/distributed.example.toml");
        let config = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!((config.bus.kind, config.facts.kind), (BusKind::Kafka, FactsKind::Clickhouse));
        assert_eq!(config.bus.kafka.brokers, "kafka:9092");
        assert_eq!(config.facts.clickhouse.url, "http://clickhouse:8123");
        assert!(config.database_url().starts_with("postgres://"));

        let text = std::fs::read_to_string(&file).unwrap();
        let example: toml::Table = toml::from_str(&text).unwrap();
        let (mut shown, mut settings) = (Vec::new(), Vec::new());
        keys(&example, "", &mut shown);
        // An optional setting may be shown commented out (`# public_url = "…"`), where a value
        // would not suit every reader of the example.
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("{name}.");
            } else if let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = "))
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                shown.push(format!("{section}{key}"));
            }
        }
        keys(&toml::Table::try_from(Config::default()).unwrap(), "", &mut settings);
        let optional = [
            "database.url",
            "facts.parquet.dir",
            "facts.clickhouse.user",
            "facts.clickhouse.password",
            "bus.partitions",
            "server.public_url",
            "server.ui_dir",
            "auth.session_key",
        ];
        let missing: Vec<_> = settings.iter().map(String::as_str).chain(optional).filter(|key| !shown.iter().any(|s| s == key)).collect();
        assert!(missing.is_empty(), "config/distributed.example.toml does not show {missing:?}");
    }

    #[test]
    fn embedded_defaults_write_parquet_facts_and_use_the_outbox_bus() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!((config.bus.kind, config.facts.kind), (BusKind::Outbox, FactsKind::Parquet));
        assert_eq!(config.facts.parquet.store(Path::new("/d")).dir, Path::new("/d/facts"));
        let set = Config::load(None, env(&[("KSA__FACTS__KIND", "none"), ("KSA__BUS__KAFKA__BROKERS", "k:1")])).unwrap();
        assert_eq!((set.facts.kind, set.bus.kafka.brokers.as_str()), (FactsKind::None, "k:1"));
    }

    #[test]
    fn unknown_settings_are_errors_that_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ksa.toml");
        std::fs::write(&file, "[server]\nlisen = \"0.0.0.0:9000\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&file), env(&[])).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
        std::fs::write(&file, "").unwrap();
        let err = format!("{:#}", Config::load(Some(&file), env(&[("KSA__SERVRE__LISTEN", "x")])).unwrap_err());
        assert!(err.contains("KSA__SERVRE__LISTEN") && err.contains("servre"), "{err}");
        let err = format!("{:#}", Config::load(Some(&file), env(&[("KSA__SERVER__LISTN", "x")])).unwrap_err());
        assert!(err.contains("KSA__SERVER__LISTN") && err.contains("listn"), "{err}");
        let err = format!("{:#}", Config::load(Some(&file), env(&[("KSA__LOG__FORMAT", "xml")])).unwrap_err());
        assert!(err.contains("xml"), "{err}");
    }

    #[test]
    fn enricher_settings_come_from_file_and_environment_and_rates_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ksa.toml");
        std::fs::write(&file, "[enricher]\nrate_per_minute = 20\nreconcile_minutes = 0\n").unwrap();
        let config = Config::load(Some(&file), env(&[("KSA__ENRICHER__SECRETS_KEY", &"ab".repeat(32))])).unwrap();
        assert_eq!(config.enricher.rate_per_minute, 20);
        assert_eq!(config.enricher.reconcile_minutes, 0);
        assert_eq!(config.enricher.secrets_key, Some("ab".repeat(32)));
        let err = format!("{:#}", Config::load(Some(&file), env(&[("KSA__ENRICHER__RATE_PER_MINUTE", "0")])).unwrap_err());
        assert!(err.contains("rate_per_minute"), "{err}");
    }

    #[test]
    fn the_processors_nice_value_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ksa.toml");
        std::fs::write(&file, "").unwrap();
        assert_eq!(Config::load(Some(&file), env(&[])).unwrap().processor.nice, 5);
        assert_eq!(Config::load(Some(&file), env(&[("KSA__PROCESSOR__NICE", "0")])).unwrap().processor.nice, 0);
        for refused in ["-1", "20"] {
            let err = format!("{:#}", Config::load(Some(&file), env(&[("KSA__PROCESSOR__NICE", refused)])).unwrap_err());
            assert!(err.contains("processor.nice must be between 0 and 19"), "{err}");
        }
    }
}
