//! What the enricher keeps: per-project API access (encrypted token, base URL, rate), the status
//! dictionaries, fetched items and marketing data, the durable schedule of item fetches with its
//! dead-letter list, and the cursors of backfill and reconciliation.
//!
//! A trait of its own beside [`crate::StateStore`], written once for both databases
//! (`enrich_store.rs`).

use std::collections::HashMap;
use std::future::Future;

use ksa_schemas::{OrderLine, Timestamp};

use crate::StateError;

/// How the enricher reaches a project's CRM. The token is stored encrypted (AES-256-GCM by the
/// enricher); this crate never sees it in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiAccess {
    pub project_id: i64,
    pub slug: String,
    pub base_url: String,
    /// `None` until a token is stored.
    pub token_enc: Option<Vec<u8>>,
    /// Requests per minute; `None` = the configured default.
    pub rate_per_minute: Option<u32>,
    pub is_active: bool,
}

impl std::fmt::Debug for ApiAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAccess")
            .field("project_id", &self.project_id)
            .field("slug", &self.slug)
            .field("base_url", &self.base_url)
            .field("token_enc", &self.token_enc.as_ref().map(|_| "<encrypted>"))
            .field("rate_per_minute", &self.rate_per_minute)
            .field("is_active", &self.is_active)
            .finish()
    }
}

/// A change to a project's API access; `None` fields stay as they are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiAccessUpdate {
    pub base_url: Option<String>,
    pub token_enc: Option<Vec<u8>>,
    /// The token's last characters, shown to people in place of the token.
    pub token_hint: Option<String>,
    /// `Some(None)` goes back to the configured default.
    pub rate_per_minute: Option<Option<u32>>,
}

impl std::fmt::Debug for ApiAccessUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAccessUpdate")
            .field("base_url", &self.base_url)
            .field("token_enc", &self.token_enc.as_ref().map(|_| "<encrypted>"))
            .field("token_hint", &self.token_hint.as_ref().map(|_| "<hint>"))
            .field("rate_per_minute", &self.rate_per_minute)
            .finish()
    }
}

/// One status of a project's dictionary.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusEntry {
    pub status_id: i64,
    pub name: String,
    pub alias: Option<String>,
    pub group_id: u16,
    /// False once the status no longer comes from the CRM (kept for history).
    pub is_active: bool,
    pub is_closing_order: bool,
    pub is_reserved: bool,
    pub expiration_period_seconds: Option<f64>,
}

/// One of the six status groups as a project names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusGroupEntry {
    pub group_id: u16,
    pub name: String,
    pub is_terminal: bool,
    pub is_enabled: bool,
}

/// What a dictionary sync changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusSyncReport {
    pub added: u64,
    pub updated: u64,
    /// Stored statuses the CRM no longer lists, now marked inactive.
    pub deactivated: u64,
}

/// UTM data and the Facebook click ids found in the order's comment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarketingRow {
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub fbclid: Option<String>,
    pub fbc: Option<String>,
    pub fbp: Option<String>,
}

/// An order's items as fetched; stored as a whole, replacing what was there.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchedItems {
    pub project_id: i64,
    pub order_id: i64,
    pub lines: Vec<OrderLine>,
    pub marketing: Option<MarketingRow>,
    pub fetched_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    Pending,
    Done,
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, StateError> {
        match text {
            "pending" => Ok(JobState::Pending),
            "done" => Ok(JobState::Done),
            "dead" => Ok(JobState::Dead),
            other => Err(StateError::Corrupt(format!("enrich job state `{other}` is not pending, done or dead"))),
        }
    }
}

/// One order in the schedule of item fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrichJob {
    pub project_id: i64,
    pub order_id: i64,
    pub state: JobState,
    /// `missing_items`, `group_reached` or `manual`.
    pub reason: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
}

/// Jobs of one project by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub pending: u64,
    pub done: u64,
    pub dead: u64,
}

/// A long-running pass over the CRM that keeps a cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CursorName {
    Backfill,
    Reconcile,
    Statuses,
}

impl CursorName {
    pub fn as_str(self) -> &'static str {
        match self {
            CursorName::Backfill => "backfill",
            CursorName::Reconcile => "reconcile",
            CursorName::Statuses => "statuses",
        }
    }
}

/// The enricher's storage.
pub trait EnrichStore: Clone + Send + Sync + 'static {
    // --- API access -----------------------------------------------------------------------
    fn api_access(&self, project_id: i64) -> impl Future<Output = Result<Option<ApiAccess>, StateError>> + Send;
    fn update_api_access(&self, project_id: i64, update: ApiAccessUpdate) -> impl Future<Output = Result<(), StateError>> + Send;

    // --- status dictionaries --------------------------------------------------------------
    /// Stores the statuses the CRM lists now: new ones are added, known ones updated (and made
    /// active again), stored ones missing from `listed` are kept and marked inactive.
    fn sync_statuses(
        &self,
        project_id: i64,
        listed: &[StatusEntry],
        synced_at: Timestamp,
    ) -> impl Future<Output = Result<StatusSyncReport, StateError>> + Send;
    /// The project's statuses by id.
    fn statuses(&self, project_id: i64) -> impl Future<Output = Result<Vec<StatusEntry>, StateError>> + Send;
    /// The six groups, by id.
    fn status_groups(&self, project_id: i64) -> impl Future<Output = Result<Vec<StatusGroupEntry>, StateError>> + Send;
    /// Status ids that orders changed into since `since` (by `orders_current`) and that the
    /// project's dictionary does not hold: a webhook brought a status the dictionary lacks.
    fn unknown_recent_statuses(&self, project_id: i64, since: Timestamp) -> impl Future<Output = Result<Vec<i64>, StateError>> + Send;
    /// Renames a group for a project.
    fn rename_status_group(&self, project_id: i64, group_id: u16, name: &str) -> impl Future<Output = Result<(), StateError>> + Send;

    // --- items ----------------------------------------------------------------------------
    /// Replaces the order's items and marketing row and marks its job done, in one transaction.
    fn store_items(&self, items: &FetchedItems) -> impl Future<Output = Result<(), StateError>> + Send;
    /// The stored items of those orders whose items were fetched (an order fetched with no
    /// lines maps to an empty list; an order never fetched is absent).
    fn order_lines(
        &self,
        project_id: i64,
        order_ids: &[i64],
    ) -> impl Future<Output = Result<HashMap<i64, Vec<OrderLine>>, StateError>> + Send;
    fn marketing(&self, project_id: i64, order_id: i64) -> impl Future<Output = Result<Option<MarketingRow>, StateError>> + Send;

    // --- the schedule ---------------------------------------------------------------------
    /// Schedules a fetch due at `due`. An order already pending keeps its attempts (and the
    /// earlier due time); a done order is fetched again only when `refetch`; a dead one stays
    /// dead until [`EnrichStore::requeue_dead`]. Returns whether a fetch is now pending.
    fn schedule_fetch(
        &self,
        project_id: i64,
        order_id: i64,
        reason: &str,
        due: Timestamp,
        refetch: bool,
    ) -> impl Future<Output = Result<bool, StateError>> + Send;
    /// Pending jobs due at `now`, earliest first.
    fn due_jobs(&self, now: Timestamp, limit: u32) -> impl Future<Output = Result<Vec<EnrichJob>, StateError>> + Send;
    /// Counts a failed attempt: the job is due again at `retry_at`, or dead when `None`.
    fn record_failure(
        &self,
        project_id: i64,
        order_id: i64,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> impl Future<Output = Result<(), StateError>> + Send;
    fn job(&self, project_id: i64, order_id: i64) -> impl Future<Output = Result<Option<EnrichJob>, StateError>> + Send;
    fn dead_jobs(&self, project_id: i64) -> impl Future<Output = Result<Vec<EnrichJob>, StateError>> + Send;
    /// Makes every dead job of the project pending again, due at `due`, with no attempts
    /// counted; returns how many.
    fn requeue_dead(&self, project_id: i64, due: Timestamp) -> impl Future<Output = Result<u64, StateError>> + Send;
    fn job_counts(&self, project_id: i64) -> impl Future<Output = Result<JobCounts, StateError>> + Send;

    // --- cursors --------------------------------------------------------------------------
    fn cursor(&self, project_id: i64, name: CursorName) -> impl Future<Output = Result<Option<String>, StateError>> + Send;
    /// Stores the cursor (a JSON document), or removes it when `None`.
    fn put_cursor(&self, project_id: i64, name: CursorName, cursor: Option<&str>) -> impl Future<Output = Result<(), StateError>> + Send;
}
