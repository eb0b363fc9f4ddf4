//! State: projects and their settings, the event log, derived order state, consumer offsets
//! and webhook statistics. One trait, two adapters (SQLite for embedded mode, PostgreSQL when
//! distributed), one test suite run against both.

mod access_cache;
pub mod admin;
mod admin_store;
mod batch;
mod columns;
mod digest;
pub mod enrich;
mod enrich_store;
pub mod latency;
mod pg_copy;
pub mod postgres;
pub mod secret;
mod sql;
pub mod sqlite;
mod store;

pub use admin::AdminStore;
pub use enrich::EnrichStore;
pub use postgres::PostgresState;
pub use sqlite::SqliteState;

use std::collections::HashMap;
use std::future::Future;

use ksa_schemas::derived::{ConsumerOffset, DerivedOrder, StoredEvent};
use ksa_schemas::{StatusEvent, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("a project with slug `{0}` already exists")]
    SlugTaken(String),
    #[error("no project with slug `{0}`")]
    NoSuchProject(String),
    #[error("a user with login `{0}` already exists")]
    LoginTaken(String),
    #[error("the settings were changed meanwhile: revision {current} is stored, not {expected}")]
    StaleRevision { expected: i64, current: i64 },
    #[error("state database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("state database schema: {0}")]
    Migrate(#[from] ksa_migrations::MigrateError),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
}

/// A project as ingest and the processor need it. The webhook secret itself is never stored:
/// only its SHA-256 digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub timezone: String,
    pub is_active: bool,
    /// Hex SHA-256 of the webhook secret.
    pub webhook_secret_hash: String,
    /// The digest of the secret before the last rotation, and until when it is accepted.
    pub previous_secret: Option<(String, Timestamp)>,
    /// CIDRs allowed to post webhooks; empty = any source.
    pub allowed_cidrs: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProject {
    pub slug: String,
    pub name: String,
    pub timezone: String,
    pub webhook_secret_hash: String,
    pub allowed_cidrs: Vec<String>,
}

/// A project's settings document and its revision (1 for the defaults of a new project).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsRecord {
    pub project_id: i64,
    /// The document as JSON text (see docs/settings.md).
    pub document: String,
    pub revision: i64,
}

/// Webhooks counted in one hour for one outcome.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WebhookCount {
    pub project_id: i64,
    /// The start of the UTC hour.
    pub hour: Timestamp,
    /// `received`, `accepted`, `duplicate`, `ignored` or `rejected`.
    pub outcome: String,
    /// Why it was rejected (`unauthorized`, `malformed`, …); empty for other outcomes.
    pub reason: String,
    pub count: i64,
}

/// How long ingest took to answer webhooks of one hour: how many fell into one bucket of
/// [`latency`]'s histogram.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WebhookLatency {
    pub project_id: i64,
    /// The start of the UTC hour.
    pub hour: Timestamp,
    /// A bucket of [`latency`], 0 to [`latency::BUCKETS`] − 1.
    pub bucket: u8,
    pub count: i64,
}

/// The last webhook of one hour that was accepted, or refused (`kind`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WebhookLatest {
    pub project_id: i64,
    /// `accepted` or `refused`.
    pub kind: String,
    /// The start of the UTC hour of `at`.
    pub hour: Timestamp,
    pub at: Timestamp,
    /// Why it was refused (as [`WebhookCount::reason`]); empty for an accepted one.
    pub reason: String,
}

/// What ingest adds to the state database at once: counts, latencies and the last webhooks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookTally {
    pub counts: Vec<WebhookCount>,
    pub latencies: Vec<WebhookLatency>,
    pub latest: Vec<WebhookLatest>,
}

impl WebhookTally {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.latencies.is_empty() && self.latest.is_empty()
    }
}

/// One row of `orders_current`, as list views read it.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderSummary {
    pub order_id: i64,
    pub current_status_id: i64,
    pub current_group_id: u16,
    pub last_changed_at: Timestamp,
    pub event_count: u32,
    pub settings_revision: i64,
}

/// Everything the processor writes for one batch; committed in ONE transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommitBatch {
    /// New events; an event whose dedup key is already stored is skipped, not an error.
    pub events: Vec<StoredEvent>,
    /// Derived rows; a row never replaces one of a higher `(settings_revision, event_count)`.
    /// Its group totals and cycles replace the order's previous ones.
    pub orders: Vec<DerivedOrder>,
    /// Where the consumer stands after this batch.
    pub offsets: Vec<ConsumerOffset>,
}

/// The state database. Every store also keeps the enricher's data ([`EnrichStore`]), so the
/// processor can read fetched items without a bound of its own.
///
/// Written once for both databases (`store.rs`), but for the processor's hot path
/// ([`HotPath`]), which each adapter writes in its dialect's fastest way.
pub trait StateStore: EnrichStore + AdminStore + Clone + Send + Sync + 'static {
    // --- callers kept in memory ------------------------------------------------------------
    /// A process that answers reads calls this once: tokens, users, projects and applied
    /// revisions are then kept in memory for as long as the database tells of every change to
    /// them (PostgreSQL, by `LISTEN`; SQLite, by a count of changes read every 100 ms); while it
    /// cannot, nothing is kept and each is read afresh.
    fn keep_access_in_memory(&self);
    /// Whether they are kept now, and how many reads memory has answered.
    fn access_kept(&self) -> (bool, u64);

    // --- projects and settings ---------------------------------------------------------
    fn create_project(&self, project: NewProject) -> impl Future<Output = Result<Project, StateError>> + Send;
    fn project_by_slug(&self, slug: &str) -> impl Future<Output = Result<Option<Project>, StateError>> + Send;
    fn projects(&self) -> impl Future<Output = Result<Vec<Project>, StateError>> + Send;
    /// Stores a new settings document as the next revision, with an audit row naming `actor`;
    /// returns the new revision. The project's time zone follows the document's.
    fn put_settings(&self, project_id: i64, document: &str, actor: &str) -> impl Future<Output = Result<i64, StateError>> + Send;
    /// The current document; `None` when the project never had one stored (use defaults, revision 0).
    fn settings(&self, project_id: i64) -> impl Future<Output = Result<Option<SettingsRecord>, StateError>> + Send;

    // --- ingest --------------------------------------------------------------------------
    /// Adds the counts to the stored ones.
    fn add_webhook_counts(&self, counts: &[WebhookCount]) -> impl Future<Output = Result<(), StateError>> + Send;
    /// Adds counts and latencies to the stored ones and keeps each hour's later last webhooks,
    /// in one transaction.
    fn add_webhook_tally(&self, tally: &WebhookTally) -> impl Future<Output = Result<(), StateError>> + Send;
    /// The counts of the hours in `[from, to)`, by hour, outcome and reason.
    fn webhook_counts(
        &self,
        project_id: i64,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Future<Output = Result<Vec<WebhookCount>, StateError>> + Send;
    /// Everything stored of the hours in `[from, to)`, by hour.
    fn webhook_tally(
        &self,
        project_id: i64,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Future<Output = Result<WebhookTally, StateError>> + Send;
    /// The project's last accepted and last refused webhook of all time (each when there is one).
    fn last_webhooks(&self, project_id: i64) -> impl Future<Output = Result<Vec<WebhookLatest>, StateError>> + Send;

    // --- processor -----------------------------------------------------------------------
    fn consumer_offsets(&self, group: &str, topic: &str) -> impl Future<Output = Result<HashMap<u32, i64>, StateError>> + Send;
    /// The stored events of these orders (no payloads), in no particular order.
    fn order_events(
        &self,
        project_id: i64,
        order_ids: &[i64],
    ) -> impl Future<Output = Result<HashMap<i64, Vec<StatusEvent>>, StateError>> + Send;
    fn commit(&self, batch: CommitBatch) -> impl Future<Output = Result<(), StateError>> + Send;
    /// Order ids of a project greater than `after`, ascending, at most `limit` (for recomputes).
    fn order_ids(&self, project_id: i64, after: i64, limit: u32) -> impl Future<Output = Result<Vec<i64>, StateError>> + Send;

    // --- reads -------------------------------------------------------------------------
    /// Orders by `last_changed_at` descending, then `order_id` descending, strictly after the
    /// cursor `(last_changed_at, order_id)` in that order.
    fn list_orders(
        &self,
        project_id: i64,
        limit: u32,
        after: Option<(Timestamp, i64)>,
    ) -> impl Future<Output = Result<Vec<OrderSummary>, StateError>> + Send;
    /// A digest of `orders_current` (without `updated_at`) and `order_cycle_metrics` of one
    /// project: equal digests mean equal derived state, on either database.
    fn derived_digest(&self, project_id: i64) -> impl Future<Output = Result<String, StateError>> + Send;
    /// Events stored for the project.
    fn event_count(&self, project_id: i64) -> impl Future<Output = Result<u64, StateError>> + Send;
    /// The stored rows (`derived_json`) of these orders, by order id.
    fn order_rows(&self, project_id: i64, order_ids: &[i64]) -> impl Future<Output = Result<HashMap<i64, String>, StateError>> + Send;
    /// Stored rows of orders with ids greater than `after`, ascending, at most `limit`: every
    /// row of a project, page by page.
    fn order_rows_after(
        &self,
        project_id: i64,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(i64, String)>, StateError>> + Send;
    /// Orders of the project with derived rows.
    fn order_count(&self, project_id: i64) -> impl Future<Output = Result<u64, StateError>> + Send;
    /// When the project's earliest order started (`None`: no orders yet).
    fn earliest_order(&self, project_id: i64) -> impl Future<Output = Result<Option<Timestamp>, StateError>> + Send;

    // --- retention: the payload archive and the audit horizon (docs/operations.md) -----------
    /// The earliest change instant, before `before`, of the project's events that still hold
    /// their payload (`None`: none).
    fn earliest_payload(&self, project_id: i64, before: Timestamp) -> impl Future<Output = Result<Option<Timestamp>, StateError>> + Send;
    /// Up to `limit` events changed in `[from, to)` that hold a payload, after the event key
    /// `after` (`(order, changed at, status)`; `(0, 0, 0)` for the first page), by key.
    fn payloads(
        &self,
        project_id: i64,
        from: Timestamp,
        to: Timestamp,
        after: (i64, Timestamp, i64),
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredPayload>, StateError>> + Send;
    /// Clears the payloads of these events (those written to the archive: a late event stored
    /// meanwhile keeps its own); how many.
    fn clear_payloads(&self, project_id: i64, payloads: &[StoredPayload]) -> impl Future<Output = Result<u64, StateError>> + Send;
    /// Puts payloads back on their events (by the dedup key; only where none is stored); how many.
    fn restore_payloads(&self, project_id: i64, payloads: &[StoredPayload]) -> impl Future<Output = Result<u64, StateError>> + Send;
    /// Deletes the audit rows written before `before`; how many.
    fn prune_audit(&self, before: Timestamp) -> impl Future<Output = Result<u64, StateError>> + Send;
}

/// An event's stored payload with the event's key, as the payload archive keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPayload {
    pub order_id: i64,
    pub status_changed_at: Timestamp,
    pub status_id: i64,
    pub payload: String,
}

/// What each adapter writes its own way: the processor's reads of events and its commits.
pub(crate) trait HotPath {
    fn read_order_events(
        &self,
        project_id: i64,
        order_ids: &[i64],
    ) -> impl Future<Output = Result<HashMap<i64, Vec<StatusEvent>>, StateError>> + Send;
    fn commit_batch(&self, batch: CommitBatch) -> impl Future<Output = Result<(), StateError>> + Send;
}
