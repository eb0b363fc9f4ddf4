//! Projects by slug, cached for a few seconds so a burst of webhooks does not read the state
//! database for every request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ksa_edge::Cidr;
use ksa_schemas::Timestamp;
use ksa_state::{StateError, StateStore};
use tokio::sync::{Mutex, RwLock};

use crate::secret::secret_matches;

/// What ingest needs of a project.
#[derive(Debug)]
pub struct ProjectEntry {
    pub id: i64,
    pub slug: String,
    pub secret_digest: String,
    /// The secret before the last rotation, and until when it is still accepted.
    pub previous: Option<(String, Timestamp)>,
    pub allowed: Vec<Cidr>,
}

impl ProjectEntry {
    /// True when `offered` is the project's secret, or its previous one within the grace period.
    pub fn accepts(&self, offered: &str, now: Timestamp) -> bool {
        secret_matches(offered, &self.secret_digest)
            || self.previous.as_ref().is_some_and(|(digest, until)| now < *until && secret_matches(offered, digest))
    }
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

    /// A known slug is trusted for `refresh`; an unknown one triggers a reload at most once a
    /// second, so a project added on a running server answers within a second. A secret that
    /// does not match reads that one project again (one indexed lookup), so a rotated secret
    /// works at once.
    pub async fn resolve<S: StateStore>(&self, state: &S, slug: &str, offered: Option<&str>, now: Timestamp) -> Resolved {
        let found = match self.cached(slug).await {
            Some(found) => found,
            None => self.reload(state, slug).await,
        };
        match (&found, offered) {
            (Resolved::Active(entry), Some(offered)) if !entry.accepts(offered, now) => self.reread(state, slug).await,
            _ => found,
        }
    }

    async fn reload<S: StateStore>(&self, state: &S, slug: &str) -> Resolved {
        let _one_reload = self.reloading.lock().await;
        if let Some(found) = self.cached(slug).await {
            return found;
        }
        match state.projects().await {
            Ok(projects) => {
                let map: HashMap<String, Arc<ProjectEntry>> =
                    projects.into_iter().filter(|p| p.is_active).map(|p| (p.slug.clone(), Arc::new(entry(p)))).collect();
                let found = map.get(slug).cloned();
                *self.entries.write().await = (Some(Instant::now()), map);
                found.map_or(Resolved::Unknown, Resolved::Active)
            }
            Err(err) => Resolved::Unavailable(err),
        }
    }

    /// Reads one project again and puts it in the cache.
    async fn reread<S: StateStore>(&self, state: &S, slug: &str) -> Resolved {
        match state.project_by_slug(slug).await {
            Ok(Some(project)) if project.is_active => {
                let fresh = Arc::new(entry(project));
                self.entries.write().await.1.insert(slug.to_owned(), fresh.clone());
                Resolved::Active(fresh)
            }
            Ok(_) => {
                self.entries.write().await.1.remove(slug);
                Resolved::Unknown
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

fn entry(project: ksa_state::Project) -> ProjectEntry {
    let allowed = project.allowed_cidrs.iter().filter_map(|c| Cidr::parse(c)).collect();
    ProjectEntry {
        id: project.id,
        slug: project.slug,
        secret_digest: project.webhook_secret_hash,
        previous: project.previous_secret,
        allowed,
    }
}
