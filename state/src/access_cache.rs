//! Callers, projects and applied revisions kept in memory between requests, while the database
//! tells of every change to them.
//!
//! Every authenticated read needs its token, its user with their memberships, its project and
//! the project's applied settings revision: four to six small reads before any work. On
//! PostgreSQL each is a round trip, and its backend shares the machine with the reads
//! themselves; on SQLite each runs in the server's own process, ≈ 0.4 ms of its CPU per request
//! in all. So a query process keeps them here while it hears of every change, whichever process
//! made it (the command line included), and empties the cache at each ([`keep_while_watching`]):
//! - PostgreSQL: triggers raise `NOTIFY ksa_access` on any write to users, memberships, tokens,
//!   projects or applied revisions, and a listener hears it the moment the write commits;
//! - SQLite, which has no notifications: triggers count the same writes in `access_changes`, and
//!   the process reads that count every [`POLL`], so another process's change counts within it.
//!
//! A write made through this process empties the cache at its commit as well, so its own next
//! request never waits for either. While changes cannot be heard (a process that serves no reads;
//! the listener or the count unreadable) nothing is kept and every read goes to the database:
//! a change that may have been missed must never leave a revoked token valid. Entries also expire
//! after [`LIFETIME`], a backstop.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Project;
use crate::admin::{ApiToken, User};

/// How long an entry is kept at most, even when no change is heard of.
pub(crate) const LIFETIME: Duration = Duration::from_secs(30);

/// Entries per kind at most; a full shelf is emptied (tokens, users and projects are few).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct AccessCache {
    /// True while a listener hears of every change.
    live: AtomicBool,
    /// Grows with every change heard of: a read that began before it keeps nothing.
    generation: AtomicU64,
    pub(crate) tokens: Shelf<String, ApiToken>,
    pub(crate) users: Shelf<i64, User>,
    pub(crate) projects: Shelf<String, Project>,
    pub(crate) revisions: Shelf<i64, i64>,
    hits: AtomicU64,
}

/// Taken before a read goes to the database: what it read may be kept only if nothing changed
/// in between. `None` when nothing may be kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket(Option<u64>);

#[derive(Debug)]
pub(crate) struct Shelf<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K, V> Default for Shelf<K, V> {
    fn default() -> Self {
        Shelf { entries: Mutex::new(HashMap::new()) }
    }
}

impl AccessCache {
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.live.load(Ordering::Acquire).then(|| self.generation.load(Ordering::Acquire)))
    }

    /// The kept value of `key` on `shelf`, if it is kept and young enough.
    pub(crate) fn get<K, V, Q>(&self, shelf: &Shelf<K, V>, key: &Q) -> Option<V>
    where
        K: Borrow<Q> + Hash + Eq,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = shelf.entries.lock().ok()?;
        let found = entries.get(key).filter(|(_, at)| at.elapsed() < LIFETIME).map(|(value, _)| value.clone());
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keeps what a read that took `ticket` found, unless something changed since.
    pub(crate) fn keep<K: Hash + Eq, V>(&self, shelf: &Shelf<K, V>, ticket: Ticket, key: K, value: V) {
        let Ticket(Some(generation)) = ticket else { return };
        let Ok(mut entries) = shelf.entries.lock() else { return };
        // Checked under the shelf's lock: `changed` moves the generation before it empties the
        // shelves, so a value read before a change is either refused here or emptied there.
        if self.live.load(Ordering::Acquire) && self.generation.load(Ordering::Acquire) == generation {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (value, Instant::now()));
        }
    }

    /// Something kept may have changed: forget everything.
    pub(crate) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        clear(&self.tokens);
        clear(&self.users);
        clear(&self.projects);
        clear(&self.revisions);
    }

    /// Whether changes are heard of; either way what was kept is forgotten.
    pub(crate) fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
        self.changed();
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Reads answered from memory so far.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// How often SQLite's count of changes is read: the longest another process's change to who may
/// do what goes unseen by a query process there.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// How a database tells a process of changes to users, memberships, tokens, projects and
/// applied revisions.
pub(crate) trait AccessWatch: Send + 'static {
    /// What a watch in progress holds (a listening connection, the last count read).
    type Watching: Send;
    /// Begins to hear of changes; an error when it cannot.
    fn start(&mut self) -> impl Future<Output = Result<Self::Watching, sqlx::Error>> + Send;
    /// Waits for the next change: `false` once changes can no longer be heard.
    fn next_change(&mut self, watching: &mut Self::Watching) -> impl Future<Output = bool> + Send;
    /// The database is closed: the watch ends.
    fn closed(&self) -> bool;
}

/// Keeps callers in `kept` while `watch` hears of every change, forgetting everything at each;
/// while it cannot, nothing is kept, and it tries again every second (one warning when it
/// starts failing, one line when it is back). Ends with the database.
pub(crate) fn keep_while_watching(kept: Arc<AccessCache>, mut watch: impl AccessWatch) {
    tokio::spawn(async move {
        let mut failing = false;
        while !watch.closed() {
            match watch.start().await {
                Ok(mut watching) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("hearing of access changes again; callers are kept in memory");
                    }
                    kept.set_live(true);
                    while watch.next_change(&mut watching).await {
                        kept.changed();
                    }
                    kept.set_live(false);
                }
                Err(error) if !watch.closed() => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(%error, "cannot hear of access changes; callers are read from the database until it can");
                    }
                }
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn clear<K, V>(shelf: &Shelf<K, V>) {
    if let Ok(mut entries) = shelf.entries.lock() {
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Project {
        Project {
            id: 1,
            slug: "shop".into(),
            name: "Shop".into(),
            timezone: "UTC".into(),
            is_active: true,
            webhook_secret_hash: String::new(),
            previous_secret: None,
            allowed_cidrs: Vec::new(),
        }
    }

    #[test]
    fn nothing_is_kept_without_a_listener() {
        let cache = AccessCache::default();
        cache.keep(&cache.revisions, cache.ticket(), 1, 7);
        assert_eq!(cache.get(&cache.revisions, &1), None);
    }

    #[test]
    fn a_value_read_before_a_change_is_not_kept() {
        let cache = AccessCache::default();
        cache.set_live(true);
        let before = cache.ticket();
        cache.changed();
        cache.keep(&cache.revisions, before, 1, 7);
        assert_eq!(cache.get(&cache.revisions, &1), None);
        cache.keep(&cache.revisions, cache.ticket(), 1, 8);
        assert_eq!(cache.get(&cache.revisions, &1), Some(8));
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn a_change_or_a_lost_listener_forgets_everything() {
        let cache = AccessCache::default();
        cache.set_live(true);
        cache.keep(&cache.projects, cache.ticket(), "shop".to_owned(), project());
        assert!(cache.get(&cache.projects, "shop").is_some());
        cache.changed();
        assert!(cache.get(&cache.projects, "shop").is_none());
        cache.keep(&cache.projects, cache.ticket(), "shop".to_owned(), project());
        cache.set_live(false);
        assert!(cache.get(&cache.projects, "shop").is_none());
        cache.set_live(true);
        assert!(cache.get(&cache.projects, "shop").is_none(), "what was kept before the listener came back is gone");
    }
}
