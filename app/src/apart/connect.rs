//! Opening what a service needs from the configuration: the state database, the bus on top of
//! it (outbox or Kafka) and the fact sink.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ksa_bus::outbox::{PostgresOutbox, SqliteOutbox};
use ksa_bus::{Bus, OutboxConfig};
use ksa_facts::{BoxedFactSink, ClickHouseSink, FactError, ParquetSink};
use ksa_processor::ProcessorConfig;
use ksa_query_api::analytics::{AnalyticsEngine, ClickHouseEngine, DataFusionEngine};
use ksa_state::StateStore;
use ksa_state::sqlite::SqliteState;

use crate::config::{BusKind, Config, FactsKind};
use crate::serve::TOPICS;
use crate::stores::{AnyState, bus_file, open_state};

/// What a service does once it has its bus and state, whichever kinds they are.
pub(crate) trait WithBus {
    fn run<B: Bus, S: StateStore>(self, bus: B, state: S) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Opens the state database and the configured bus, and runs `service` on them.
pub(crate) async fn with_bus<T: WithBus>(config: &Config, service: T) -> anyhow::Result<()> {
    let state = open_state(config).await?;
    match config.bus.kind {
        BusKind::Outbox => match state {
            AnyState::Sqlite(state) => {
                let bus = open_sqlite_outbox(&state, config).await?;
                service.run(bus, state).await
            }
            AnyState::Postgres(state) => {
                let bus = PostgresOutbox::start(state.pool().clone(), &TOPICS, outbox_config(config, true))
                    .await
                    .context("starting the outbox bus")?;
                service.run(bus, state).await
            }
        },
        BusKind::Kafka => {
            let bus = kafka::connect(config).await?;
            crate::with_state!(state, state => service.run(bus, state).await)
        }
    }
}

/// The embedded bus: a file of its own beside the state database file (`state.db` →
/// `state-bus.db`), so that ingest's group commits and the processor's commits never wait for
/// each other; an in-memory state database keeps the bus in its own tables.
async fn open_sqlite_outbox(state: &SqliteState, config: &Config) -> anyhow::Result<SqliteOutbox> {
    let outbox = outbox_config(config, false);
    let Some(state_file) = state.file() else {
        return SqliteOutbox::start_with_gate(state.pool().clone(), state.write_gate(), &TOPICS, outbox)
            .await
            .context("starting the outbox bus");
    };
    let file = bus_file(state_file);
    let (bus, opened) = SqliteOutbox::open(&file, Some(state.pool()), &TOPICS, outbox)
        .await
        .with_context(|| format!("starting the outbox bus in {}", file.display()))?;
    if opened.moved_records > 0 || opened.moved_keys > 0 {
        tracing::info!(
            records = opened.moved_records,
            idempotency_keys = opened.moved_keys,
            file = %file.display(),
            "moved the outbox of the state database into its own file"
        );
    }
    Ok(bus)
}

fn outbox_config(config: &Config, postgres: bool) -> OutboxConfig {
    OutboxConfig {
        partitions: config.bus.partitions_for(postgres),
        queue_capacity: config.bus.queue_capacity.max(1),
        ..OutboxConfig::default()
    }
}

/// `run` is the embedded mode: its bus is the outbox. Kafka needs the services apart.
pub fn require_outbox(config: &Config, command: &str) -> anyhow::Result<()> {
    if config.bus.kind != BusKind::Outbox {
        bail!("`{command}` runs on the outbox bus only; with bus.kind = \"kafka\" run `ingest`, `process` and `query-api` instead");
    }
    Ok(())
}

#[cfg(feature = "kafka")]
mod kafka {
    use std::time::Duration;

    use anyhow::{Context, bail};
    use ksa_bus::kafka::{KafkaBus, KafkaConfig};

    use crate::config::Config;
    use crate::serve::TOPICS;

    /// The values of `bus.kafka.compression` (librdkafka's `compression.type`).
    const COMPRESSIONS: [&str; 4] = ["none", "gzip", "snappy", "lz4"];

    /// The `[bus.kafka]` settings as the adapter takes them.
    pub fn kafka_config(config: &Config) -> anyhow::Result<KafkaConfig> {
        let section = &config.bus.kafka;
        if let Some(unknown) = section.topics.keys().find(|name| !TOPICS.contains(&name.as_str())) {
            bail!("bus.kafka.topics: `{unknown}` is not a topic of keycrm-analytics ({})", TOPICS.join(", "));
        }
        let mut kafka = KafkaConfig::new(section.brokers.clone(), config.bus.partitions_for(true));
        for (topic, partitions) in &section.topics {
            kafka.topics.insert(topic.clone(), (*partitions).max(1));
        }
        kafka.topic_prefix = section.topic_prefix.clone();
        kafka.client_id = section.client_id.clone();
        kafka.delivery_timeout = Duration::from_millis(section.delivery_timeout_ms);
        kafka.queue_capacity = section.queue_capacity.max(1);
        kafka.linger = Duration::from_millis(section.linger_ms);
        if !COMPRESSIONS.contains(&section.compression.as_str()) {
            bail!("bus.kafka.compression: `{}` is not one of {}", section.compression, COMPRESSIONS.join(", "));
        }
        kafka.compression = section.compression.clone();
        kafka.metadata_timeout = Duration::from_millis(section.metadata_timeout_ms);
        kafka.rewind_when_quiet = section.rewind_when_quiet;
        Ok(kafka)
    }

    pub async fn connect(config: &Config) -> anyhow::Result<KafkaBus> {
        let kafka = kafka_config(config)?;
        let brokers = kafka.brokers.clone();
        KafkaBus::connect(kafka).await.with_context(|| format!("connecting to Kafka at {brokers}"))
    }
}

#[cfg(not(feature = "kafka"))]
mod kafka {
    use crate::config::Config;

    pub async fn connect(_config: &Config) -> anyhow::Result<ksa_bus::outbox::SqliteOutbox> {
        anyhow::bail!("bus.kind = \"kafka\", but this binary was built without the `kafka` feature; rebuild with `--features kafka`")
    }
}

/// How long a start waits for ClickHouse to answer before it gives up.
const CLICKHOUSE_START_WAIT: Duration = Duration::from_secs(60);

/// The configured fact sink, its schema applied; `None` for `facts.kind = "none"`. A
/// ClickHouse server that cannot be reached yet is retried for a minute.
pub async fn open_facts(config: &Config) -> anyhow::Result<Option<BoxedFactSink>> {
    match config.facts.kind {
        FactsKind::None => Ok(None),
        FactsKind::Parquet => {
            let store = config.facts.parquet.store(&config.data_dir);
            let dir = store.dir.clone();
            let sink = ParquetSink::open(store).with_context(|| format!("opening the Parquet facts in {}", dir.display()))?;
            tokio::spawn(settle_months(sink.clone()));
            Ok(Some(BoxedFactSink::new("parquet", sink)))
        }
        FactsKind::Clickhouse => Ok(Some(BoxedFactSink::new("clickhouse", connect_clickhouse(config).await?))),
    }
}

/// How often the Parquet store looks for months that stopped changing, and how long a month's
/// files must have been left alone to be merged into one: a month of one file is read without
/// deduplication (`docs/distributed.md`, "The Parquet facts").
const SETTLE_EVERY: Duration = Duration::from_secs(15 * 60);
const SETTLED_AFTER: Duration = Duration::from_secs(60 * 60);

/// Merges, now and then, each month that stopped changing into one file.
async fn settle_months(sink: ParquetSink) {
    let mut tick = tokio::time::interval(SETTLE_EVERY);
    loop {
        tick.tick().await;
        match sink.compact_quiet(SETTLED_AFTER).await {
            Ok(report) if report.months > 0 => tracing::info!(
                months = report.months,
                files = report.files_merged,
                rows_kept = report.rows_kept,
                "merged Parquet months that stopped changing"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "merging quiet Parquet months failed; tried again later"),
        }
    }
}

/// What answers the analytics queries: DataFusion over the Parquet facts, or ClickHouse.
pub async fn open_analytics(config: &Config) -> anyhow::Result<Option<Arc<dyn AnalyticsEngine>>> {
    Ok(match config.facts.kind {
        FactsKind::None => None,
        FactsKind::Parquet => {
            let dir = config.facts.parquet.store(&config.data_dir).dir;
            Some(Arc::new(DataFusionEngine::new(dir, ANALYTICS_THREADS)))
        }
        FactsKind::Clickhouse => Some(Arc::new(ClickHouseEngine::new(connect_clickhouse(config).await?.client().clone()))),
    })
}

/// Threads one DataFusion query uses.
const ANALYTICS_THREADS: usize = 2;

/// Connects to ClickHouse and brings the fact schema up to date, waiting for a server that is
/// still starting.
async fn connect_clickhouse(config: &Config) -> anyhow::Result<ClickHouseSink> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        match ClickHouseSink::connect(config.facts.clickhouse.clone()).await {
            Ok((sink, report)) => {
                tracing::info!(applied = ?report.applied, database = %config.facts.clickhouse.database, "ClickHouse facts ready");
                return Ok(sink);
            }
            Err(err @ FactError::Unavailable { .. }) if started.elapsed() < CLICKHOUSE_START_WAIT => {
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "ClickHouse is not answering yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err).context("opening the ClickHouse facts"),
        }
    }
}

/// The processor's settings from `[processor]` and `[bus]`.
pub fn processor_config(config: &Config) -> ProcessorConfig {
    ProcessorConfig {
        batch_records: config.processor.batch_records.max(1),
        cache_orders: config.processor.cache_orders.max(1),
        linger: Duration::from_millis(config.processor.linger_ms),
        burst_linger: Duration::from_millis(config.processor.burst_linger_ms),
        retention: Duration::from_secs(config.bus.retention_hours * 3600),
        key_retention: Duration::from_secs(u64::from(config.bus.idempotency_days.max(1)) * 86_400),
        refetch_items_on_group: (config.enricher.refetch_items_on_group > 0).then_some(config.enricher.refetch_items_on_group),
        ..ProcessorConfig::default()
    }
}

#[cfg(all(test, feature = "kafka"))]
mod tests {
    use super::kafka::kafka_config;
    use crate::config::Config;

    #[test]
    fn kafka_topics_take_bus_partitions_unless_listed_and_unknown_topics_are_refused() {
        let mut config = Config::default();
        config.bus.partitions = Some(6);
        config.bus.kafka.brokers = "k1:9092,k2:9092".into();
        config.bus.kafka.topics.insert("order-updates".into(), 2);
        config.bus.kafka.delivery_timeout_ms = 2500;
        let kafka = kafka_config(&config).unwrap();
        assert_eq!(kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(kafka.topics.get("status-events"), Some(&6));
        assert_eq!(kafka.topics.get("order-updates"), Some(&2));
        assert_eq!(kafka.delivery_timeout, std::time::Duration::from_millis(2500));

        config.bus.kafka.topics.insert("status-event".into(), 6);
        let err = kafka_config(&config).unwrap_err().to_string();
        assert!(err.contains("status-event") && err.contains("status-events"), "{err}");
    }

    #[test]
    fn kafka_compression_defaults_to_lz4_and_an_unknown_codec_is_refused_naming_the_setting() {
        let mut config = Config::default();
        assert_eq!(kafka_config(&config).unwrap().compression, "lz4");
        config.bus.kafka.compression = "none".into();
        assert_eq!(kafka_config(&config).unwrap().compression, "none");
        config.bus.kafka.compression = "brotli".into();
        let err = kafka_config(&config).unwrap_err().to_string();
        assert!(err.contains("bus.kafka.compression") && err.contains("brotli"), "{err}");
    }
}
