//! Projects by slug, cached for a few seconds so a burst of webhooks does not read the state
//! database for every request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ksa_state::{StateError, StateStore};
use tokio::sync::{Mutex, RwLock};

use crate::cidr::Cidr;

/// What ingest needs of a project.
#[derive(Debug)]
pub struct ProjectEntry {
    pub id: i64,
    pub slug: String,
    pub secret_digest: String,
    pub allowed: Vec<Cidr>,
}

pub enum Resolved {
    Active(Arc<ProjectEntry>),
    Unknown,
    Unavailable(StateError),
}

/// How often an unknown slug may cause a reload.
const MISS_RELOAD: Duration = Duration::from_secs(1);

type Projects = HashMap<String, Arc<ProjectEntry>>;

pub struct ProjectDirectory {
    refresh: Duration,
    /// When the projects were last read, and the active ones by slug.
    entries: RwLock<(Option<Instant>, Projects)>,
    reloading: Mutex<()>,
}

impl ProjectDirectory {
    pub fn new(refresh: Duration) -> Self {
        ProjectDirectory { refresh, entries: RwLock::new((None, HashMap::new())), reloading: Mutex::new(()) }
    }

    /// A known slug is trusted for `refresh`; an unknown one triggers a reload at most once
    /// a second, so a project added on a running server answers within a second.
    pub async fn resolve<S: StateStore>(&self, state: &S, slug: &str) -> Resolved {
        if let Some(found) = self.cached(slug).await {
            return found;
        }
        let _one_reload = self.reloading.lock().await;
        if let Some(found) = self.cached(slug).await {
            return found;
        }
        match state.projects().await {
            Ok(projects) => {
                let map: HashMap<String, Arc<ProjectEntry>> = projects
                    .into_iter()
                    .filter(|p| p.is_active)
                    .map(|p| {
                        let allowed = p.allowed_cidrs.iter().filter_map(|c| Cidr::parse(c)).collect();
                        let entry = ProjectEntry { id: p.id, slug: p.slug.clone(), secret_digest: p.webhook_secret_hash, allowed };
                        (p.slug, Arc::new(entry))
                    })
                    .collect();
                let found = map.get(slug).cloned();
                *self.entries.write().await = (Some(Instant::now()), map);
                found.map_or(Resolved::Unknown, Resolved::Active)
            }
            Err(err) => Resolved::Unavailable(err),
        }
    }

    /// The cached answer, when the cache is fresh enough to give one.
    async fn cached(&self, slug: &str) -> Option<Resolved> {
        let entries = self.entries.read().await;
        let age = entries.0.map(|at| at.elapsed())?;
        match entries.1.get(slug) {
            Some(entry) if age < self.refresh => Some(Resolved::Active(entry.clone())),
            None if age < MISS_RELOAD.min(self.refresh) => Some(Resolved::Unknown),
            _ => None,
        }
    }
}
