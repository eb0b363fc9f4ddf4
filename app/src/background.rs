//! The processors' runtime in `run`: threads that give way to webhook answers under a burst.
//!
//! In `run`, ingest and the processors share the machine's cores. A webhook's answer waits for
//! its event to be durable, and KeyCRM waits for the answer; the event's processing may trail
//! it by a second without anyone noticing. So the processors run on a Tokio runtime of their
//! own whose threads run at a lower scheduling priority (`processor.nice` above the process's
//! own nice value): when both want the CPU, ingest goes first, and the processors use what it
//! leaves (a closed-loop burst leaves plenty: every connection waits for a group commit now
//! and then). Threads these threads start inherit their priority: the Parquet writer's
//! blocking tasks, the facts' compactor and the SQLite connection the processors commit on.
//! The outbox's group-commit writer keeps a connection of its own, opened before, so its
//! thread keeps the process's priority.

use tokio::runtime::Runtime;

/// The lowest priority a nice value can give (the largest value); `processor.nice` goes from 0
/// to this.
pub const LOWEST: i32 = 19;

/// A runtime whose threads run `nice` steps below the calling process (0: at its priority).
/// It is shut down without waiting when dropped, which is allowed inside another runtime.
pub struct Background {
    runtime: Option<Runtime>,
}

impl Background {
    pub fn start(nice: i32) -> std::io::Result<Background> {
        // Relative to the caller's priority, read once: a thread the runtime starts from one
        // of its own (a blocking task's) has the lowered priority already.
        let target = (own_priority() + nice.clamp(0, LOWEST)).min(LOWEST);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("ksa-processor")
            .on_thread_start(move || set_priority(target))
            .enable_all()
            .build()?;
        Ok(Background { runtime: Some(runtime) })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("the runtime lives until dropped").handle()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The calling thread's nice value (on Linux the nice value is a thread's); 0 where unknown.
fn own_priority() -> i32 {
    #[cfg(unix)]
    {
        rustix::process::getpriority_process(None).unwrap_or(0)
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// Gives the calling thread the nice value `nice` unless it has it already. A failure only
/// leaves the thread at the priority it has.
fn set_priority(nice: i32) {
    #[cfg(unix)]
    if own_priority() != nice
        && let Err(error) = rustix::process::setpriority_process(None, nice)
    {
        tracing::debug!(%error, "could not lower the priority of a processor thread");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_threads_run_below_the_callers_priority() {
        let own = rustix::process::getpriority_process(None).unwrap();
        let background = Background::start(7).unwrap();
        let on_a_worker = background.handle().spawn(async {
            let theirs = rustix::process::getpriority_process(None).unwrap();
            // A thread started from one of them (the compactor, a SQLite connection) inherits it.
            let child = std::thread::spawn(|| rustix::process::getpriority_process(None).unwrap()).join().unwrap();
            // The runtime's blocking threads are started from its workers: lowered once only.
            let blocking = tokio::task::spawn_blocking(|| rustix::process::getpriority_process(None).unwrap()).await.unwrap();
            (theirs, child, blocking)
        });
        let (theirs, child, blocking) = background.handle().block_on(on_a_worker).unwrap();
        assert_eq!(theirs, (own + 7).min(LOWEST));
        assert_eq!(child, theirs);
        assert_eq!(blocking, theirs);
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), own, "the caller's thread keeps its priority");
    }

    #[test]
    fn nice_zero_leaves_the_priority_alone() {
        let own = rustix::process::getpriority_process(None).unwrap();
        let background = Background::start(0).unwrap();
        let on_a_worker = background.handle().spawn(async { rustix::process::getpriority_process(None).unwrap() });
        let theirs = background.handle().block_on(on_a_worker).unwrap();
        assert_eq!(theirs, own);
    }
}
