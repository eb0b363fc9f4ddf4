//! The processor's announcements on `order-updates`: after a batch commits, one record per
//! order it changed, carrying the order's row (as of its latest event).
//!
//! Publishing never holds up the event path: committed batches are handed to a task of their
//! own through a bounded queue, and a batch that finds the queue full is not waited for. The
//! task keeps, per partition of `status-events`, the last offset whose orders it has announced
//! (stored in the state database every few seconds, as consumer group `{group}.published`).
//! When it meets a gap (a batch it never got, or a crash between a commit and its
//! announcement) it reads the missing records of `status-events` again, and announces the
//! current rows of their orders. So every committed change is announced at least once;
//! readers keep the newest row of an order by its version.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ksa_bus::{Bus, NewRecord};
use ksa_schemas::bus::{LiveMessage, ORDER_UPDATES, STATUS_EVENTS, StatusMessage, order_key};
use ksa_schemas::derived::{ConsumerOffset, DerivedOrder};
use ksa_schemas::row::OrderRow;
use ksa_state::{CommitBatch, StateStore};
use tokio::sync::{mpsc, watch};

/// Committed batches waiting to be announced; more are not waited for (the gap is read again).
const QUEUE: usize = 64;
/// How often the announced offsets are stored.
const STORE_EVERY: Duration = Duration::from_secs(2);
/// Records of `status-events` read at a time when filling a gap.
const GAP_PAGE: usize = 5_000;
/// Announcements per append. A batch that catches up with a backlog changes up to tens of
/// thousands of orders, and on the outbox one append is one transaction, which every webhook
/// queued behind it waits for; in pieces, the webhooks' appends go in between.
const APPEND_AT_ONCE: usize = 256;

/// One committed batch: per partition the offsets `(first, last)` it covered, and the records
/// announcing its orders ([`order_record`]).
pub struct Committed {
    pub ranges: HashMap<u32, (i64, i64)>,
    pub records: Vec<NewRecord>,
}

/// The handle the processor hands committed batches to.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::Sender<Committed>,
    /// Per partition, the last offset whose orders were announced: `status-events` records
    /// after it must be kept for a gap to be filled (retention reads it).
    announced: Arc<Mutex<HashMap<u32, i64>>>,
}

impl Publisher {
    /// Starts the task. `committed` is where the processor starts reading; announcements
    /// stored as further back are filled in first.
    pub async fn start<B: Bus, S: StateStore>(
        bus: B,
        state: S,
        group: &str,
        committed: &HashMap<u32, i64>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Publisher, ksa_state::StateError> {
        let group = format!("{group}.published");
        let stored = state.consumer_offsets(&group, STATUS_EVENTS).await?;
        // Never announced before (a new installation, or an upgrade): start where processing does.
        let announced: HashMap<u32, i64> = committed.iter().map(|(p, last)| (*p, stored.get(p).map_or(*last, |next| next - 1))).collect();
        let (queue, receiver) = mpsc::channel(QUEUE);
        let shared = Arc::new(Mutex::new(announced.clone()));
        let task = Task { bus, state, group, announced, shared: shared.clone(), stored_at: Instant::now(), dirty: false };
        tokio::spawn(task.run(receiver, committed.clone(), shutdown));
        Ok(Publisher { queue, announced: shared })
    }

    /// Hands a committed batch over, without waiting.
    pub fn committed(&self, batch: Committed) {
        if batch.records.is_empty() && batch.ranges.is_empty() {
            return;
        }
        if self.queue.try_send(batch).is_err() {
            tracing::debug!("the announcement queue is full; the orders will be announced from the log");
        }
    }

    /// The last announced offset of a partition.
    pub fn announced(&self, partition: u32) -> Option<i64> {
        self.announced.lock().ok().and_then(|a| a.get(&partition).copied())
    }
}

/// The record announcing `order`'s row: a [`LiveMessage::OrderUpdated`] written around the
/// stored row document as it is (it is the row's JSON), without parsing it again.
pub fn order_record(order: &DerivedOrder) -> NewRecord {
    let payload = format!(r#"{{"order_updated":{{"project_id":{},"row":{}}}}}"#, order.project_id, order.derived_json);
    NewRecord { key: order_key(order.project_id, order.order_id), payload: payload.into_bytes(), idempotency_key: None }
}

struct Task<B, S> {
    bus: B,
    state: S,
    group: String,
    announced: HashMap<u32, i64>,
    shared: Arc<Mutex<HashMap<u32, i64>>>,
    stored_at: Instant,
    dirty: bool,
}

impl<B: Bus, S: StateStore> Task<B, S> {
    async fn run(mut self, mut receiver: mpsc::Receiver<Committed>, committed: HashMap<u32, i64>, mut shutdown: watch::Receiver<bool>) {
        // What a crash left unannounced.
        for (partition, last) in committed {
            self.fill(partition, last, &mut shutdown).await;
        }
        loop {
            let batch = tokio::select! {
                batch = receiver.recv() => batch,
                _ = shutdown.changed() => None,
                () = tokio::time::sleep(STORE_EVERY) => {
                    self.store().await;
                    continue;
                }
            };
            let Some(batch) = batch else { break };
            for (partition, (first, _)) in &batch.ranges {
                self.fill(*partition, first - 1, &mut shutdown).await;
            }
            if !self.append(batch.records, &mut shutdown).await {
                break;
            }
            for (partition, (_, last)) in batch.ranges {
                self.advance(partition, last);
            }
            if self.stored_at.elapsed() >= STORE_EVERY {
                self.store().await;
            }
        }
        self.store().await;
    }

    /// Announces the orders of `status-events` records after the announced offset up to
    /// `through`, from their stored rows.
    async fn fill(&mut self, partition: u32, through: i64, shutdown: &mut watch::Receiver<bool>) {
        let mut after = self.announced.get(&partition).copied().unwrap_or(through);
        while after < through && !*shutdown.borrow() {
            let records = match self.bus.read(STATUS_EVENTS, partition, after, GAP_PAGE, Duration::ZERO).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(partition, %error, "could not read back unannounced records; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let records: Vec<_> = records.into_iter().filter(|r| r.offset <= through).collect();
            let Some(last) = records.last().map(|r| r.offset) else { break };
            let mut orders: HashMap<i64, BTreeSet<i64>> = HashMap::new();
            for record in &records {
                if let Ok(message) = serde_json::from_slice::<StatusMessage>(&record.payload) {
                    orders.entry(message.project_id()).or_default().insert(message.order_id());
                }
            }
            let mut announcements = Vec::new();
            for (project_id, ids) in orders {
                let ids: Vec<i64> = ids.into_iter().collect();
                match self.state.order_rows(project_id, &ids).await {
                    Ok(rows) => {
                        for (order_id, document) in rows {
                            if let Ok(row) = serde_json::from_str::<OrderRow>(&document) {
                                let message = LiveMessage::OrderUpdated { project_id, row: Box::new(row) };
                                if let Ok(payload) = serde_json::to_vec(&message) {
                                    announcements.push(NewRecord { key: order_key(project_id, order_id), payload, idempotency_key: None });
                                }
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(partition, %error, "could not read the rows to announce; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            if !self.append(announcements, shutdown).await {
                return;
            }
            self.advance(partition, last);
            after = last;
        }
    }

    /// Appends in pieces of [`APPEND_AT_ONCE`], each until it succeeds; false when shutting
    /// down first.
    async fn append(&mut self, mut records: Vec<NewRecord>, shutdown: &mut watch::Receiver<bool>) -> bool {
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(APPEND_AT_ONCE));
            if !self.append_piece(records, shutdown).await {
                return false;
            }
            records = rest;
        }
        true
    }

    async fn append_piece(&mut self, records: Vec<NewRecord>, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.bus.append(ORDER_UPDATES, records.clone()).await {
                Ok(_) => return true,
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "could not announce order updates; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return false,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn advance(&mut self, partition: u32, last: i64) {
        let slot = self.announced.entry(partition).or_insert(last);
        if last > *slot {
            *slot = last;
            self.dirty = true;
            if let Ok(mut shared) = self.shared.lock() {
                shared.insert(partition, last);
            }
        }
    }

    async fn store(&mut self) {
        if !self.dirty {
            return;
        }
        let offsets = self
            .announced
            .iter()
            .map(|(partition, last)| ConsumerOffset {
                group: self.group.clone(),
                topic: STATUS_EVENTS.into(),
                partition: *partition,
                next_offset: last + 1,
            })
            .collect();
        match self.state.commit(CommitBatch { offsets, ..CommitBatch::default() }).await {
            Ok(()) => {
                self.dirty = false;
                self.stored_at = Instant::now();
            }
            Err(error) => tracing::warn!(%error, "could not store the announced offsets"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_row_reads_back_as_the_row() {
        let t = "2026-02-02T07:00:00Z";
        let row: OrderRow = serde_json::from_value(serde_json::json!({
            "order_id": 7, "current_status_id": 20, "current_group_id": 2, "open": true,
            "started_at": t, "first_event_at": t, "last_changed_at": t, "untracked_seconds": 0.0,
            "urgency": "urgent", "sla_profile": "urgent", "sla": "ok", "working_seconds": 60.5, "wall_seconds": 60.5,
            "urgency_source": {"kind": "rule", "match_type": "sku", "match_value": "X", "line": 1},
            "groups": {"2": {"working_seconds": 60.5, "wall_seconds": 60.5, "visits": 1, "limit_seconds": 7200, "sla": "ok"}},
            "statuses": {"20": {"working_seconds": 60.5, "wall_seconds": 60.5, "visits": 1, "sla": "none"}},
            "cycles": {}, "crossings": {"group_near_at": "2026-02-02T08:36:00Z"},
            "event_count": 1, "settings_revision": 3, "history_truncated": false, "as_of": t,
        }))
        .expect("a row");
        let order = DerivedOrder {
            project_id: 4,
            order_id: 7,
            current_status_id: 20,
            current_group_id: 2,
            last_changed_at: row.last_changed_at,
            started_at: row.started_at,
            untracked_seconds: 0.0,
            delivery_entered_at: None,
            cycle_duration_to_delivery: None,
            closed_at: None,
            cycle_rule_id_applied: None,
            urgency: "urgent".into(),
            sla_state: "ok".into(),
            event_count: 1,
            settings_revision: 3,
            derived_json: serde_json::to_string(&row).unwrap(),
            cycles: Vec::new(),
        };
        let record = order_record(&order);
        assert_eq!(record.key, "4:7");
        let message: LiveMessage = serde_json::from_slice(&record.payload).expect("the record reads back");
        assert_eq!(message, LiveMessage::OrderUpdated { project_id: 4, row: Box::new(row) });
    }

    #[tokio::test]
    async fn a_large_batch_of_announcements_is_appended_in_pieces_and_in_order() {
        use ksa_bus::OutboxConfig;
        use ksa_bus::outbox::SqliteOutbox;
        let state = ksa_state::SqliteState::open("sqlite::memory:").await.expect("state");
        let config = OutboxConfig { partitions: 1, ..OutboxConfig::default() };
        let bus = SqliteOutbox::start(state.pool().clone(), &[STATUS_EVENTS, ORDER_UPDATES], config).await.expect("outbox");
        let mut task = Task {
            bus: bus.clone(),
            state,
            group: "processor.published".into(),
            announced: HashMap::new(),
            shared: Arc::default(),
            stored_at: Instant::now(),
            dirty: false,
        };
        let count = 2 * APPEND_AT_ONCE + 3;
        let records: Vec<NewRecord> =
            (0..count).map(|i| NewRecord { key: format!("1:{i}"), payload: i.to_string().into_bytes(), idempotency_key: None }).collect();
        let (_stop, mut shutdown) = watch::channel(false);
        assert!(task.append(records, &mut shutdown).await);
        assert_eq!(bus.stats().appends, 3, "three appends, so webhooks can be committed between them");
        let read = bus.read(ORDER_UPDATES, 0, -1, count + 10, Duration::ZERO).await.expect("read");
        let payloads: Vec<String> = read.iter().map(|r| String::from_utf8(r.payload.clone()).unwrap()).collect();
        assert_eq!(payloads, (0..count).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}
