//! Callers, projects and applied revisions kept in memory between requests, while the database
//! tells of every change to them.
//!
//! Every authenticated read needs its token, its user with their memberships, its project and
//! the project's applied settings revision: four to six small reads before any work. On
//! PostgreSQL each is a round trip, and its backend shares the machine with the reads
//! themselves. So a query process keeps them here while a listener hears of every change
//! ([`crate::PostgresState`]'s `keep_access_in_memory`): triggers raise `NOTIFY ksa_access` on
//! any write to users, memberships, tokens, projects or applied revisions, whichever process
//! made it (the command line included), and the listener empties the cache. A write made
//! through this process empties it at its commit as well, so its own next request never waits
//! for the notification.
//!
//! Without a listener (SQLite, whose reads are local and cheap; a process that serves no reads;
//! PostgreSQL while the listener reconnects) nothing is kept and every read goes to the
//! database: a notification that may have been missed must never leave a revoked token valid.
//! Entries also expire after [`LIFETIME`], a backstop.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
