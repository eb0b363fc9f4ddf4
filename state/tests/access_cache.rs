//! Callers, projects and applied revisions kept in memory by a query process while it hears of
//! every change (PostgreSQL: `LISTEN ksa_access`; SQLite: the count of changes, read every
//! 100 ms), forgotten when any process changes them, and not kept while it cannot hear.

mod common;

use std::time::{Duration, Instant};

use ksa_schemas::Timestamp;
use ksa_state::admin::{Actor, AuditRecord, NewUser, ProjectChange, ProjectRole, UserChange};
use ksa_state::{NewProject, PostgresState, SqliteState, StateStore};

use common::{on_postgres, on_sqlite};

const TOKEN_HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn audit(action: &str) -> AuditRecord {
    AuditRecord { project_id: None, action: action.into(), entity: "test".into(), entity_id: None, before: None, after: None }
}

fn now() -> Timestamp {
    Timestamp::from_micros(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64)
}

/// A project, a member of it and their token, made through `store`.
async fn caller<S: StateStore>(store: &S) -> (i64, i64) {
    let project = store
        .create_project(NewProject {
            slug: "alpha".into(),
            name: "Alpha".into(),
            timezone: "Europe/Kyiv".into(),
            webhook_secret_hash: "ab".repeat(32),
            allowed_cidrs: Vec::new(),
        })
        .await
        .expect("creating a project")
        .id;
    let user = NewUser {
        login: "ivan".into(),
        email: None,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        is_owner: false,
        memberships: vec![(project, ProjectRole::Viewer)],
    };
    let user = store.create_user(user, &Actor::cli(), audit("user.create")).await.expect("creating a user").id;
    store.create_token(user, "script", TOKEN_HASH, &Actor::cli(), audit("token.create")).await.expect("creating a token");
    (project, user)
}

/// Every read a request makes before its work: token, user, project, applied revision.
async fn read_all<S: StateStore>(store: &S, project: i64, user: i64) -> (bool, bool, Option<String>, i64) {
    let token = store.use_token(TOKEN_HASH, now()).await.expect("reading the token").is_some();
    let active = store.user(user).await.expect("reading the user").is_some_and(|u| u.is_active);
    let name = store.project_by_slug("alpha").await.expect("reading the project").map(|p| p.name);
    let revision = store.applied_revision(project).await.expect("reading the revision");
    (token, active, name, revision)
}

/// Waits up to five seconds for `check` to hold on what `store` reads.
async fn eventually<S: StateStore>(
    store: &S,
    project: i64,
    user: i64,
    what: &str,
    check: impl Fn(&(bool, bool, Option<String>, i64)) -> bool,
) {
    let started = Instant::now();
    loop {
        let seen = read_all(store, project, user).await;
        if check(&seen) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: still {seen:?} after 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until_kept<S: StateStore>(store: &S, kept: bool) {
    let started = Instant::now();
    while store.access_kept().0 != kept {
        assert!(started.elapsed() < Duration::from_secs(10), "the listener never became {kept}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kept by `store`, changed by `other` (another process on the same database, with a memory of
/// its own: the command line, another replica of the query API) and by `store` itself.
async fn kept_until_any_process_changes_them<S: StateStore>(store: &S, other: &S) -> (i64, i64) {
    let (project, user) = caller(other).await;
    store.keep_access_in_memory();
    wait_until_kept(store, true).await;

    let first = read_all(store, project, user).await;
    assert_eq!(first, (true, true, Some("Alpha".into()), 0));
    let (_, hits) = store.access_kept();
    assert_eq!(read_all(store, project, user).await, first);
    assert_eq!(store.access_kept().1 - hits, 4, "the second round of reads is answered from memory");

    // Changes made by the other process reach this one's memory.
    let change = ProjectChange { name: Some("Alpha 2".into()), ..Default::default() };
    other.update_project(project, change, &Actor::cli(), audit("project.update")).await.expect("renaming");
    eventually(store, project, user, "a renamed project", |seen| seen.2.as_deref() == Some("Alpha 2")).await;
    let change = UserChange { is_active: Some(false), ..Default::default() };
    other.update_user(user, change, &Actor::cli(), audit("user.disable")).await.expect("disabling");
    eventually(store, project, user, "a disabled user", |seen| !seen.1).await;
    let token = other.tokens(user).await.expect("listing tokens")[0].id;
    assert!(other.delete_token(user, token, &Actor::cli(), audit("token.delete")).await.expect("revoking"));
    eventually(store, project, user, "a revoked token", |seen| !seen.0).await;

    // A change made through this store is seen by its very next read, without waiting.
    let change = UserChange { is_active: Some(true), ..Default::default() };
    store.update_user(user, change, &Actor::cli(), audit("user.enable")).await.expect("enabling");
    assert!(read_all(store, project, user).await.1, "enabled at once");
    let change = ProjectChange { name: Some("Alpha 3".into()), ..Default::default() };
    store.update_project(project, change, &Actor::cli(), audit("project.update")).await.expect("renaming");
    assert_eq!(read_all(store, project, user).await.2.as_deref(), Some("Alpha 3"), "renamed at once");
    (project, user)
}

/// Once the watch is back after being lost, changes by `other` reach `store` again.
async fn heard_again<S: StateStore>(store: &S, other: &S, project: i64, user: i64) {
    wait_until_kept(store, true).await;
    let change = ProjectChange { name: Some("Alpha 4".into()), ..Default::default() };
    other.update_project(project, change, &Actor::cli(), audit("project.update")).await.expect("renaming");
    eventually(store, project, user, "a project renamed after the watch came back", |seen| seen.2.as_deref() == Some("Alpha 4")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_callers_in_memory_and_forgets_them_when_any_process_changes_them() {
    on_postgres("postgres_keeps_callers_in_memory_and_forgets_them_when_any_process_changes_them", |store: PostgresState| async move {
        let other = PostgresState::from_pool(store.pool().clone());
        let (project, user) = kept_until_any_process_changes_them(&store, &other).await;

        // The listener's connection lost: nothing is kept until it is back, then all is kept again.
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'")
            .execute(other.pool())
            .await
            .expect("ending the listener's session");
        wait_until_kept(&store, false).await;
        assert_eq!(read_all(&store, project, user).await.2.as_deref(), Some("Alpha 3"), "read from the database meanwhile");
        heard_again(&store, &other, project, user).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_callers_in_memory_and_forgets_them_when_any_process_changes_them() {
    on_sqlite(|store: SqliteState| async move {
        let other = SqliteState::from_pool(store.pool().clone());
        let (project, user) = kept_until_any_process_changes_them(&store, &other).await;

        // The count unreadable: nothing is kept until it is readable again.
        sqlx::query("ALTER TABLE access_changes RENAME TO access_changes_away").execute(other.pool()).await.expect("hiding the count");
        wait_until_kept(&store, false).await;
        assert_eq!(read_all(&store, project, user).await.2.as_deref(), Some("Alpha 3"), "read from the database meanwhile");
        sqlx::query("ALTER TABLE access_changes_away RENAME TO access_changes").execute(other.pool()).await.expect("restoring the count");
        heard_again(&store, &other, project, user).await;
    })
    .await;
}
