//! The SQL outbox: the bus as tables `bus_heads`, `bus_log` and `bus_idempotency` — in a SQLite
//! file of its own beside the state database in embedded mode ([`SqliteOutbox`]), in the state
//! database when it is PostgreSQL ([`PostgresOutbox`]).
//!
//! What holds, on both:
//! - **Group commit.** Appends go through a bounded queue to one writer task per outbox, which
//!   writes everything waiting (up to `max_batch_records`) in one transaction and then answers
//!   each append. A full queue refuses an append at once with [`BusError::Overloaded`]. A failed
//!   transaction rolls back whole and every append in it gets [`BusError::Unavailable`].
//! - **Offsets** count from 1 in each partition, without gaps: a consumer that has read nothing
//!   reads `after = 0`. `bus_heads.next_offset` holds the last offset handed out (0 = none). The
//!   head row stays locked until commit, so records become visible in offset order and a reader
//!   never skips one.
//! - **Idempotency.** A record whose idempotency key the topic has seen — in an earlier batch or
//!   earlier in the same one — is a `Duplicate` and is not appended. Keys are kept for good:
//!   [`Bus::truncate`](crate::Bus::truncate) removes records, never keys or heads.
//! - **Reads wait on a signal, not a poll**: each partition has one, raised after every commit
//!   that advanced it (and on PostgreSQL also by `LISTEN`, for other processes' appends).
//! - **Lifetime.** The writer stops once the last handle is dropped, after answering what was
//!   queued; `shutdown().await` does the same on demand and waits for it.

mod batch;
mod postgres;
mod sqlite;
mod topics;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ksa_schemas::Timestamp;
use ksa_schemas::bus::partition_for;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

pub use postgres::{NOTIFY_CHANNEL, PostgresOutbox};
pub use sqlite::{BusFileOpened, SqliteOutbox, WriteGate};

use self::batch::{Appends, Batch, Routed};
use self::topics::Topics;
use self::writer::{AppendRequest, Command};
use crate::{AppendOutcome, BusError, NewRecord, OutboxConfig, Record};

/// What one outbox has done since it started: for metrics, and to see group commit at work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Group commits that committed.
    pub transactions: u64,
    /// Group commits that rolled back; each of their appends got `Unavailable`.
    pub failed_transactions: u64,
    /// Appends answered with their outcomes.
    pub appends: u64,
    /// Records appended (duplicates not counted).
    pub records_appended: u64,
    /// Records found to be duplicates.
    pub duplicates: u64,
    /// Appends refused because the queue was full.
    pub overloaded: u64,
    /// Reads waiting for an append right now.
    pub waiting_reads: u64,
}

/// The storage side of an outbox: one implementation per database.
pub(crate) trait Store: Send + Sync + 'static {
    /// Writes `batch` in one transaction (see [`batch`] for the rules) and returns, per append,
    /// its outcomes. On error nothing of the batch is written.
    fn commit(&self, batch: &Batch) -> impl Future<Output = Result<Vec<Vec<AppendOutcome>>, sqlx::Error>> + Send;

    /// Up to `limit` records of a partition after offset `after`, oldest first.
    fn read(&self, topic: &str, partition: u32, after: i64, limit: i64) -> impl Future<Output = Result<Vec<Record>, sqlx::Error>> + Send;

    /// The offset of a partition's last record, −1 when it has none.
    fn end_offset(&self, topic: &str, partition: u32) -> impl Future<Output = Result<i64, sqlx::Error>> + Send;

    /// Deletes a topic's idempotency keys recorded before `appended_before`.
    fn forget_keys(&self, topic: &str, appended_before: Timestamp) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Deletes a partition's records up to `through` appended before `appended_before`.
    fn truncate(
        &self,
        topic: &str,
        partition: u32,
        through: i64,
        appended_before: Timestamp,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;
}

/// Records deleted per statement by retention, so that no transaction holds the database for
/// long.
pub(crate) const DELETES_PER_STATEMENT: i64 = 5000;

/// Runs `step`, a delete of at most [`DELETES_PER_STATEMENT`] rows, until one deletes fewer;
/// returns how many went. Records are appended in offset order, so the old enough ones come
/// first: a truncation step looks at the next records in offset order only and deletes those old
/// enough, and the first step that finds a younger one is the last. (Filtering the whole range
/// on `appended_at` instead made every pass read every record kept, a full day's log, once a
/// minute: a quarter of a core on a log of millions.)
pub(crate) async fn delete_in_steps<F, Fut>(mut step: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let mut deleted = 0;
    loop {
        let done = step().await?;
        deleted += done;
        if done < DELETES_PER_STATEMENT as u64 {
            return Ok(deleted);
        }
    }
}

/// What the writer task (and the PostgreSQL listener) share with the handles.
pub(crate) struct Shared {
    pub topics: Topics,
    pub counters: Counters,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub transactions: AtomicU64,
    pub failed_transactions: AtomicU64,
    pub appends: AtomicU64,
    pub records_appended: AtomicU64,
    pub duplicates: AtomicU64,
    pub overloaded: AtomicU64,
    pub waiting_reads: AtomicU64,
}

/// The database-independent part of an outbox handle; cheap to clone.
pub(crate) struct Core<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Core<S> {
    fn clone(&self) -> Self {
        Core { inner: Arc::clone(&self.inner) }
    }
}

/// Dropped with the last handle: that drops the queue's sender, so the writer drains and ends,
/// and `stop`, so the listener ends.
struct Inner<S> {
    store: Arc<S>,
    shared: Arc<Shared>,
    queue: mpsc::Sender<Command>,
    closed: AtomicBool,
    stop: watch::Sender<bool>,
    writer_exited: watch::Receiver<()>,
}

/// An append as it leaves the caller: refused, answered at once, or waiting for the writer.
enum Queued {
    Answered(Vec<AppendOutcome>),
    Waiting(oneshot::Receiver<Result<Vec<AppendOutcome>, BusError>>),
}

impl<S: Store> Core<S> {
    /// Spawns the writer; must run inside a Tokio runtime.
    pub fn start(store: S, topics: &[&str], config: &OutboxConfig) -> Result<Self, BusError> {
        if config.partitions == 0 || config.queue_capacity == 0 {
            return Err(BusError::Unavailable(format!(
                "the outbox needs at least one partition and a queue of at least one append \
                 (configured: {} partitions, queue capacity {})",
                config.partitions, config.queue_capacity
            )));
        }
        let shared = Arc::new(Shared { topics: Topics::new(topics, config.partitions), counters: Counters::default() });
        let store = Arc::new(store);
        let (queue, requests) = mpsc::channel(config.queue_capacity);
        let (exited, writer_exited) = watch::channel(());
        tokio::spawn(writer::run(Arc::clone(&store), Arc::clone(&shared), requests, config.max_batch_records.max(1), exited));
        let (stop, _) = watch::channel(false);
        Ok(Core { inner: Arc::new(Inner { store, shared, queue, closed: AtomicBool::new(false), stop, writer_exited }) })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Turns `true` on shutdown; its sender is dropped with the last handle.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    pub fn partitions(&self, topic: &str) -> Result<u32, BusError> {
        self.inner.shared.topics.partitions(topic)
    }

    /// Queues the append right away (so appends keep the order in which they were called) and
    /// returns the wait for its answer.
    pub fn append(
        &self,
        topic: &str,
        records: Vec<NewRecord>,
    ) -> impl Future<Output = Result<Vec<AppendOutcome>, BusError>> + Send + 'static {
        let queued = self.enqueue(topic, records);
        async move {
            match queued? {
                Queued::Answered(outcomes) => Ok(outcomes),
                Queued::Waiting(answer) => answer.await.unwrap_or(Err(BusError::Closed)),
            }
        }
    }

    fn enqueue(&self, topic: &str, records: Vec<NewRecord>) -> Result<Queued, BusError> {
        let topics = &self.inner.shared.topics;
        let topic = topics.name(topic)?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        if records.is_empty() {
            return Ok(Queued::Answered(Vec::new()));
        }
        let partitions = topics.partitions(&topic)?;
        let records = records.into_iter().map(|record| Routed { partition: partition_for(&record.key, partitions), record }).collect();
        let (reply, answer) = oneshot::channel();
        match self.inner.queue.try_send(Command::Append(AppendRequest { appends: Appends { topic, records }, reply })) {
            Ok(()) => Ok(Queued::Waiting(answer)),
            Err(TrySendError::Full(_)) => {
                self.inner.shared.counters.overloaded.fetch_add(1, Ordering::Relaxed);
                Err(BusError::Overloaded)
            }
            Err(TrySendError::Closed(_)) => Err(BusError::Closed),
        }
    }

    pub async fn read(&self, topic: &str, partition: u32, after: i64, max: usize, wait: Duration) -> Result<Vec<Record>, BusError> {
        // Subscribed before the first read, so an append committed after it is never missed.
        let mut raised = self.inner.shared.topics.subscribe(topic, partition)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let deadline = Instant::now().checked_add(wait);
        loop {
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(BusError::Closed);
            }
            let records = self.inner.store.read(topic, partition, after, limit).await.map_err(unavailable)?;
            if !records.is_empty() || wait.is_zero() {
                return Ok(records);
            }
            let waited = {
                let _waiting = WaitingRead::new(&self.inner.shared.counters);
                match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, raised.changed()).await,
                    None => Ok(raised.changed().await),
                }
            };
            match waited {
                // Raised: read again; a raise without news (another partition's reconnect,
                // for one) just leads back here.
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(BusError::Closed),
                Err(_elapsed) => {
                    if self.inner.closed.load(Ordering::Acquire) {
                        return Err(BusError::Closed);
                    }
                    return self.inner.store.read(topic, partition, after, limit).await.map_err(unavailable);
                }
            }
        }
    }

    pub async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64, BusError> {
        self.inner.shared.topics.subscribe(topic, partition)?;
        self.inner.store.end_offset(topic, partition).await.map_err(unavailable)
    }

    pub async fn forget_keys(&self, topic: &str, appended_before: Timestamp) -> Result<u64, BusError> {
        self.inner.shared.topics.subscribe(topic, 0)?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        self.inner.store.forget_keys(topic, appended_before).await.map_err(unavailable)
    }

    pub async fn truncate(&self, topic: &str, partition: u32, through: i64, appended_before: Timestamp) -> Result<u64, BusError> {
        self.inner.shared.topics.subscribe(topic, partition)?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        self.inner.store.truncate(topic, partition, through, appended_before).await.map_err(unavailable)
    }

    pub fn stats(&self) -> OutboxStats {
        let counters = &self.inner.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        OutboxStats {
            transactions: get(&counters.transactions),
            failed_transactions: get(&counters.failed_transactions),
            appends: get(&counters.appends),
            records_appended: get(&counters.records_appended),
            duplicates: get(&counters.duplicates),
            overloaded: get(&counters.overloaded),
            waiting_reads: get(&counters.waiting_reads),
        }
    }

    /// Refuses new appends and reads ([`BusError::Closed`], also to reads waiting now), writes
    /// the appends already queued, and returns once each has been answered.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.stop.send_replace(true);
        self.inner.shared.topics.raise_all();
        // Behind every append queued so far; fails only if the writer is already gone.
        let _ = self.inner.queue.send(Command::Shutdown).await;
        let mut exited = self.inner.writer_exited.clone();
        // The writer never sends; this ends when it drops its sender, on exit.
        while exited.changed().await.is_ok() {}
    }
}

/// Counts a read as waiting while it lives.
struct WaitingRead<'a>(&'a Counters);

impl<'a> WaitingRead<'a> {
    fn new(counters: &'a Counters) -> Self {
        counters.waiting_reads.fetch_add(1, Ordering::Relaxed);
        WaitingRead(counters)
    }
}

impl Drop for WaitingRead<'_> {
    fn drop(&mut self) {
        self.0.waiting_reads.fetch_sub(1, Ordering::Relaxed);
    }
}

fn unavailable(error: sqlx::Error) -> BusError {
    BusError::Unavailable(error.to_string())
}

/// Implements [`Bus`] and the outbox's own methods for a handle wrapping a `Core`.
macro_rules! outbox_handle {
    ($handle:ty) => {
        impl $handle {
            /// Counters since start (see [`OutboxStats`](crate::outbox::OutboxStats)).
            pub fn stats(&self) -> $crate::outbox::OutboxStats {
                self.core.stats()
            }

            /// Refuses new appends and reads with [`BusError::Closed`](crate::BusError::Closed)
            /// (reads waiting now included), writes the appends already queued and returns once
            /// every one of them has been answered. Dropping the last handle also stops the
            /// writer after the queue is written, without waiting for it.
            pub async fn shutdown(&self) {
                self.core.shutdown().await
            }
        }

        impl $crate::Bus for $handle {
            fn partitions(&self, topic: &str) -> Result<u32, $crate::BusError> {
                self.core.partitions(topic)
            }

            /// Queued (or refused with `Overloaded`) as soon as it is called, not when first
            /// polled: appends from one caller are written in the order they were called.
            fn append(
                &self,
                topic: &str,
                records: Vec<$crate::NewRecord>,
            ) -> impl std::future::Future<Output = Result<Vec<$crate::AppendOutcome>, $crate::BusError>> + Send {
                self.core.append(topic, records)
            }

            fn read(
                &self,
                topic: &str,
                partition: u32,
                after: i64,
                max: usize,
                wait: std::time::Duration,
            ) -> impl std::future::Future<Output = Result<Vec<$crate::Record>, $crate::BusError>> + Send {
                self.core.read(topic, partition, after, max, wait)
            }

            fn end_offset(&self, topic: &str, partition: u32) -> impl std::future::Future<Output = Result<i64, $crate::BusError>> + Send {
                self.core.end_offset(topic, partition)
            }

            fn truncate(
                &self,
                topic: &str,
                partition: u32,
                through: i64,
                appended_before: ksa_schemas::Timestamp,
            ) -> impl std::future::Future<Output = Result<u64, $crate::BusError>> + Send {
                self.core.truncate(topic, partition, through, appended_before)
            }

            fn forget_keys(
                &self,
                topic: &str,
                appended_before: ksa_schemas::Timestamp,
            ) -> impl std::future::Future<Output = Result<u64, $crate::BusError>> + Send {
                self.core.forget_keys(topic, appended_before)
            }
        }
    };
}
pub(crate) use outbox_handle;
