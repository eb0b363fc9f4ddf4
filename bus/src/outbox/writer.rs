//! The group-commit writer: one task per outbox that takes every append waiting in the queue
//! (up to `max_batch_records`) and writes them in one transaction, then answers each. An append
//! is never split: one larger than `max_batch_records` is written alone, in one transaction.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot, watch};

use super::Shared;
use super::Store;
use super::batch::{Appends, Batch};
use crate::{AppendOutcome, BusError};

/// The writer's answer to one append.
pub(crate) type Reply = oneshot::Sender<Result<Vec<AppendOutcome>, BusError>>;

pub(crate) enum Command {
    Append(AppendRequest),
    /// Stop taking appends; write those already queued, then end.
    Shutdown,
}

pub(crate) struct AppendRequest {
    pub appends: Appends,
    pub reply: Reply,
}

impl AppendRequest {
    fn len(&self) -> usize {
        self.appends.records.len()
    }
}

/// Runs until every handle is gone (or a shutdown was asked) and the queue is empty. Dropping
/// `_exited` at the end tells `shutdown` that everything queued was answered.
pub(crate) async fn run<S: Store>(
    store: Arc<S>,
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Command>,
    max_batch_records: usize,
    _exited: watch::Sender<()>,
) {
    let mut carried: Option<AppendRequest> = None;
    loop {
        let first = match carried.take() {
            Some(request) => request,
            None => match queue.recv().await {
                Some(Command::Append(request)) => request,
                Some(Command::Shutdown) => {
                    queue.close();
                    continue;
                }
                None => break,
            },
        };
        let mut records = first.len();
        let mut requests = vec![first];
        while records < max_batch_records {
            match queue.try_recv() {
                Ok(Command::Append(request)) if records + request.len() > max_batch_records => {
                    carried = Some(request);
                    break;
                }
                Ok(Command::Append(request)) => {
                    records += request.len();
                    requests.push(request);
                }
                Ok(Command::Shutdown) => queue.close(),
                Err(_) => break,
            }
        }
        commit(&*store, &shared, requests).await;
    }
}

/// Writes one batch and answers every request in it: all with their outcomes, or all with
/// `Unavailable` when the transaction failed (it rolled back, so nothing of it was written).
async fn commit<S: Store>(store: &S, shared: &Shared, requests: Vec<AppendRequest>) {
    let (appends, replies): (Vec<Appends>, Vec<Reply>) = requests.into_iter().map(|r| (r.appends, r.reply)).unzip();
    let batch = Batch { appends };
    let counters = &shared.counters;
    match store.commit(&batch).await {
        Ok(outcomes) => {
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            let mut touched: Vec<(&str, u32)> = Vec::new();
            for (appends, outcomes) in batch.appends.iter().zip(&outcomes) {
                for outcome in outcomes {
                    match *outcome {
                        AppendOutcome::Appended { partition, .. } => {
                            counters.records_appended.fetch_add(1, Ordering::Relaxed);
                            if !touched.contains(&(&*appends.topic, partition)) {
                                touched.push((&appends.topic, partition));
                            }
                        }
                        AppendOutcome::Duplicate => {
                            counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            for (topic, partition) in touched {
                shared.topics.raise(topic, partition);
            }
            counters.appends.fetch_add(replies.len() as u64, Ordering::Relaxed);
            for (reply, outcomes) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcomes));
            }
        }
        Err(error) => {
            counters.failed_transactions.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, appends = replies.len(), "outbox: a group commit failed and was rolled back");
            let message = error.to_string();
            for reply in replies {
                let _ = reply.send(Err(BusError::Unavailable(message.clone())));
            }
        }
    }
}
