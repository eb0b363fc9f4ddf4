//! Identical reads asked at the same time share one computation.
//!
//! A read joins a computation that has not started yet, never one that is already running, so
//! its answer is measured after the read arrived, exactly as if it had been computed alone (a
//! default `as_of` is the moment the computation starts). While a computation runs, identical
//! reads that arrive wait for the next one, which starts when it ends and answers all of them:
//! sixteen dashboards polling the same view of one project cost about one computation per round
//! instead of sixteen. A read that differs in any parameter is computed on its own.
//!
//! Computations run as tasks of their own: a client that goes away does not cancel the answer
//! the others wait for.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use crate::error::ApiError;

/// An answer once it is there.
type Answer = Option<Result<Bytes, ApiError>>;

/// The computations of one read: the one running, and the next, which reads that arrive now
/// join.
#[derive(Default)]
struct Lane {
    running: Option<watch::Receiver<Answer>>,
    next: Option<watch::Receiver<Answer>>,
}

/// The reads being computed, by key.
#[derive(Clone, Default)]
pub struct Shared {
    lanes: Arc<Mutex<HashMap<String, Lane>>>,
}

impl Shared {
    /// The answer to the read named `key`: computed by `compute`, or by an identical read's
    /// computation that starts after this call.
    pub async fn answer<F, Fut>(&self, key: String, compute: F) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Bytes, ApiError>> + Send + 'static,
    {
        let mut answer = {
            let mut lanes = self.lock();
            let lane = lanes.entry(key.clone()).or_default();
            match &lane.next {
                Some(next) => next.clone(),
                None => {
                    let (sender, answer) = watch::channel(None);
                    let after = lane.running.clone();
                    match after {
                        Some(_) => lane.next = Some(answer.clone()),
                        None => lane.running = Some(answer.clone()),
                    }
                    tokio::spawn(self.clone().run(key, after, sender, compute));
                    answer
                }
            }
        };
        let answer = answer.wait_for(Option::is_some).await.map_err(|_| ApiError::internal("the computation of this read failed"))?;
        match &*answer {
            Some(answer) => answer.clone(),
            None => Err(ApiError::internal("the computation of this read ended without an answer")),
        }
    }

    /// Computes one answer, after `after` (the computation running when it was asked for) ends.
    async fn run<F, Fut>(self, key: String, after: Option<watch::Receiver<Answer>>, sender: watch::Sender<Answer>, compute: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, ApiError>>,
    {
        let mine = sender.subscribe();
        if let Some(mut after) = after {
            // An error here means that computation died; this one runs all the same.
            let _ = after.wait_for(Option::is_some).await;
            if let Some(lane) = self.lock().get_mut(&key) {
                // Reads that arrive from now on wait for the computation after this one.
                lane.running = lane.next.take();
            }
        }
        let answer = compute().await;
        sender.send_replace(Some(answer));
        let mut lanes = self.lock();
        if let Some(lane) = lanes.get_mut(&key)
            && lane.running.as_ref().is_some_and(|running| running.same_channel(&mine))
        {
            lane.running = None;
            if lane.next.is_none() {
                lanes.remove(&key);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads being computed or waiting (for tests).
    pub fn pending(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A computation that counts itself and answers its number once `gate` opens.
    fn counted(
        runs: &Arc<AtomicUsize>,
        gate: &watch::Receiver<bool>,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<Bytes, ApiError>> + Send>> + Send + 'static {
        let (runs, mut gate) = (runs.clone(), gate.clone());
        move || {
            Box::pin(async move {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = gate.wait_for(|open| *open).await;
                Ok(Bytes::from(n.to_string()))
            })
        }
    }

    /// A read of `key` by a counted computation, spawned.
    fn read(
        shared: &Shared,
        key: &'static str,
        runs: &Arc<AtomicUsize>,
        gate: &watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<Result<Bytes, ApiError>> {
        let (shared, compute) = (shared.clone(), counted(runs, gate));
        tokio::spawn(async move { shared.answer(key.into(), compute).await })
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn reads_that_arrive_while_one_runs_share_the_next_computation() {
        let shared = Shared::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (open, gate) = watch::channel(false);
        let first = read(&shared, "kpis", &runs, &gate);
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Five identical reads while the first runs: they must not take its answer.
        let later: Vec<_> = (0..5).map(|_| read(&shared, "kpis", &runs, &gate)).collect();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the next computation starts only when the running one ends");
        open.send_replace(true);
        assert_eq!(first.await.unwrap().unwrap(), "1");
        for read in later {
            assert_eq!(read.await.unwrap().unwrap(), "2", "the five share one computation that started after they arrived");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(shared.pending(), 0, "nothing is kept once every read is answered");
    }

    #[tokio::test]
    async fn different_reads_are_computed_apart() {
        let shared = Shared::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (open, gate) = watch::channel(false);
        let reads: Vec<_> = ["a", "b", "c"].into_iter().map(|key| read(&shared, key, &runs, &gate)).collect();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "three keys, three computations at once");
        open.send_replace(true);
        for read in reads {
            read.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn a_read_that_goes_away_does_not_cancel_the_answer_others_wait_for() {
        let shared = Shared::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (open, gate) = watch::channel(false);
        let leaver = read(&shared, "page", &runs, &gate);
        settle().await;
        let stayer = read(&shared, "page", &runs, &gate);
        let joiner = read(&shared, "page", &runs, &gate);
        settle().await;
        leaver.abort();
        stayer.abort();
        open.send_replace(true);
        assert_eq!(joiner.await.unwrap().unwrap(), "2");
        settle().await;
        assert_eq!(shared.pending(), 0);
    }

    #[tokio::test]
    async fn errors_are_shared_and_a_failed_computation_does_not_block_the_next() {
        let shared = Shared::default();
        let failing = || async { Err::<Bytes, _>(ApiError::bad("sort", "no such sort")) };
        let error = shared.answer("x".into(), failing).await.unwrap_err();
        assert_eq!((error.status.as_u16(), error.field.as_deref()), (400, Some("sort")));
        let panicking = || async { panic!("a computation that panics") };
        let error = shared.answer("x".into(), panicking).await.unwrap_err();
        assert_eq!(error.status.as_u16(), 500);
        let answer = shared.answer("x".into(), || async { Ok(Bytes::from_static(b"fine")) }).await.unwrap();
        assert_eq!(answer, "fine");
    }
}
