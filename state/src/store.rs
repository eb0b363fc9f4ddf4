//! [`StateStore`] on either database, written once (see `sql`); the processor's reads and
//! commits come from each adapter's [`HotPath`].

use std::collections::HashMap;

use ksa_schemas::{StatusEvent, Timestamp};

use crate::admin::{Actor, AdminStore, AuditRecord, SettingsChange};
use crate::columns::{self, STATUS_GROUPS};
use crate::digest::{DerivedDigest, DigestCycle, DigestOrder};
use crate::sql::{Row, SqlStore, args, is_unique_violation, sql};
use crate::{
    CommitBatch, HotPath, NewProject, OrderSummary, Project, SettingsRecord, StateError, StateStore, StoredPayload, WebhookCount,
    WebhookLatency, WebhookLatest, WebhookTally,
};

/// The columns of a [`Project`].
macro_rules! project_columns {
    ($tail:literal) => {
        concat!(
            "SELECT id, slug, name, timezone, is_active, webhook_secret_hash, allowed_cidrs, webhook_secret_prev_hash, \
             {micros:webhook_secret_prev_until} AS prev_until_micros FROM projects",
            $tail
        )
    };
}

/// The columns of a [`WebhookLatest`].
macro_rules! latest_columns {
    ($tail:literal) => {
        concat!("SELECT project_id, kind, {micros:hour} AS hour_micros, {micros:last_at} AS at_micros, reason FROM webhook_latest", $tail)
    };
}

impl<T: SqlStore + HotPath + Clone + Send + Sync + 'static> StateStore for T {
    fn keep_access_in_memory(&self) {
        SqlStore::keep_access_in_memory(self);
    }

    fn access_kept(&self) -> (bool, u64) {
        let kept = self.db().access();
        (kept.is_live(), kept.hits())
    }

    async fn create_project(&self, project: NewProject) -> Result<Project, StateError> {
        let allowed_cidrs = columns::join_cidrs(&project.allowed_cidrs);
        let mut tx = self.db().begin().await?;
        let inserted = tx
            .fetch_one(
                sql!(
                    "INSERT INTO projects (slug, name, timezone, webhook_secret_hash, allowed_cidrs) VALUES ($1, $2, $3, $4, $5) \
                     RETURNING id"
                ),
                args![&project.slug, &project.name, &project.timezone, &project.webhook_secret_hash, &allowed_cidrs],
            )
            .await;
        let id: i64 = match inserted {
            Ok(row) => row.get(0)?,
            Err(error) if is_unique_violation(&error) => return Err(StateError::SlugTaken(project.slug)),
            Err(error) => return Err(error),
        };
        for (group_id, name, is_terminal) in STATUS_GROUPS {
            tx.execute(
                sql!("INSERT INTO status_group_dict (project_id, group_id, name, is_terminal) VALUES ($1, $2, $3, $4)"),
                args![id, group_id, name, is_terminal],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Project {
            id,
            slug: project.slug,
            name: project.name,
            timezone: project.timezone,
            is_active: true,
            webhook_secret_hash: project.webhook_secret_hash,
            previous_secret: None,
            allowed_cidrs: columns::split_cidrs(&allowed_cidrs),
        })
    }

    async fn project_by_slug(&self, slug: &str) -> Result<Option<Project>, StateError> {
        let kept = self.db().access();
        if let Some(project) = kept.get(&kept.projects, slug) {
            return Ok(Some(project));
        }
        let ticket = kept.ticket();
        let row = self.db().fetch_optional(sql!(project_columns!(" WHERE slug = $1")), args![slug]).await?;
        let project = row.as_ref().map(project_from_row).transpose()?;
        if let Some(project) = &project {
            kept.keep(&kept.projects, ticket, slug.to_owned(), project.clone());
        }
        Ok(project)
    }

    async fn projects(&self) -> Result<Vec<Project>, StateError> {
        let rows = self.db().fetch_all(sql!(project_columns!(" ORDER BY id")), args![]).await?;
        rows.iter().map(project_from_row).collect()
    }

    async fn put_settings(&self, project_id: i64, document: &str, actor: &str) -> Result<i64, StateError> {
        let timezone = serde_json::from_str::<serde_json::Value>(document)
            .ok()
            .and_then(|doc| doc.get("timezone").and_then(|tz| tz.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "UTC".to_owned());
        let change = SettingsChange { project_id, document: document.to_owned(), timezone, expected_revision: None };
        let audit = AuditRecord {
            project_id: Some(project_id),
            action: "settings.update".into(),
            entity: "settings".into(),
            entity_id: None,
            before: None,
            after: None,
        };
        let user_id = self.user_by_login(actor).await?.map(|(user, _)| user.id);
        let actor = Actor { name: actor.to_owned(), user_id, address: None };
        self.store_settings(change, &actor, audit).await
    }

    async fn settings(&self, project_id: i64) -> Result<Option<SettingsRecord>, StateError> {
        let row = self
            .db()
            .fetch_optional(
                sql!("SELECT project_id, {text:settings_json} AS document, revision FROM project_settings WHERE project_id = $1"),
                args![project_id],
            )
            .await?;
        row.map(|row| {
            Ok(SettingsRecord { project_id: row.get("project_id")?, document: row.get("document")?, revision: row.get("revision")? })
        })
        .transpose()
    }

    async fn add_webhook_counts(&self, counts: &[WebhookCount]) -> Result<(), StateError> {
        self.add_webhook_tally(&WebhookTally { counts: counts.to_vec(), ..WebhookTally::default() }).await
    }

    async fn add_webhook_tally(&self, tally: &WebhookTally) -> Result<(), StateError> {
        let counts = columns::summed_webhook_counts(&tally.counts);
        let latencies = columns::summed_webhook_latencies(&tally.latencies);
        let latest = columns::latest_webhooks(&tally.latest);
        if counts.is_empty() && latencies.is_empty() && latest.is_empty() {
            return Ok(());
        }
        let mut tx = self.db().begin().await?;
        for count in counts {
            tx.execute(
                sql!(
                    "INSERT INTO webhook_counters (project_id, hour, outcome, reason, count) VALUES ($1, {at:$2}, $3, $4, $5) \
                     ON CONFLICT (project_id, hour, outcome, reason) DO UPDATE SET count = webhook_counters.count + excluded.count"
                ),
                args![count.project_id, count.hour, count.outcome, count.reason, count.count],
            )
            .await?;
        }
        for latency in latencies {
            tx.execute(
                sql!(
                    "INSERT INTO webhook_latency (project_id, hour, bucket, count) VALUES ($1, {at:$2}, $3, $4) \
                     ON CONFLICT (project_id, hour, bucket) DO UPDATE SET count = webhook_latency.count + excluded.count"
                ),
                args![latency.project_id, latency.hour, i64::from(latency.bucket), latency.count],
            )
            .await?;
        }
        for last in latest {
            tx.execute(
                sql!(
                    "INSERT INTO webhook_latest (project_id, kind, hour, last_at, reason) VALUES ($1, $2, {at:$3}, {at:$4}, $5) \
                     ON CONFLICT (project_id, kind, hour) DO UPDATE SET last_at = excluded.last_at, reason = excluded.reason \
                     WHERE excluded.last_at > webhook_latest.last_at"
                ),
                args![last.project_id, last.kind, last.hour, last.at, last.reason],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn webhook_counts(&self, project_id: i64, from: Timestamp, to: Timestamp) -> Result<Vec<WebhookCount>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!(
                    "SELECT project_id, {micros:hour} AS hour_micros, outcome, reason, count FROM webhook_counters \
                     WHERE project_id = $1 AND hour >= {at:$2} AND hour < {at:$3} ORDER BY hour, outcome, reason"
                ),
                args![project_id, from, to],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(WebhookCount {
                    project_id: row.get("project_id")?,
                    hour: row.instant("hour_micros")?,
                    outcome: row.get("outcome")?,
                    reason: row.get("reason")?,
                    count: row.get("count")?,
                })
            })
            .collect()
    }

    async fn webhook_tally(&self, project_id: i64, from: Timestamp, to: Timestamp) -> Result<WebhookTally, StateError> {
        let counts = self.webhook_counts(project_id, from, to).await?;
        let rows = self
            .db()
            .fetch_all(
                sql!(
                    "SELECT project_id, {micros:hour} AS hour_micros, bucket, count FROM webhook_latency \
                     WHERE project_id = $1 AND hour >= {at:$2} AND hour < {at:$3} ORDER BY hour, bucket"
                ),
                args![project_id, from, to],
            )
            .await?;
        let latencies = rows
            .iter()
            .map(|row| {
                let bucket: i64 = row.get("bucket")?;
                Ok(WebhookLatency {
                    project_id: row.get("project_id")?,
                    hour: row.instant("hour_micros")?,
                    bucket: u8::try_from(bucket).map_err(|_| StateError::Corrupt(format!("latency bucket {bucket} is out of range")))?,
                    count: row.get("count")?,
                })
            })
            .collect::<Result<_, StateError>>()?;
        let rows = self
            .db()
            .fetch_all(
                sql!(latest_columns!(" WHERE project_id = $1 AND hour >= {at:$2} AND hour < {at:$3} ORDER BY hour, kind")),
                args![project_id, from, to],
            )
            .await?;
        let latest = rows.iter().map(latest_from_row).collect::<Result<_, StateError>>()?;
        Ok(WebhookTally { counts, latencies, latest })
    }

    async fn last_webhooks(&self, project_id: i64) -> Result<Vec<WebhookLatest>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!(latest_columns!(
                    " l WHERE project_id = $1 \
                     AND hour = (SELECT max(m.hour) FROM webhook_latest m WHERE m.project_id = l.project_id AND m.kind = l.kind) \
                     ORDER BY kind"
                )),
                args![project_id],
            )
            .await?;
        rows.iter().map(latest_from_row).collect()
    }

    async fn consumer_offsets(&self, group: &str, topic: &str) -> Result<HashMap<u32, i64>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!("SELECT partition_no, next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2"),
                args![group, topic],
            )
            .await?;
        let pairs = rows.iter().map(|row| Ok((row.get(0)?, row.get(1)?))).collect::<Result<Vec<(i64, i64)>, StateError>>()?;
        columns::consumer_offsets(pairs)
    }

    async fn order_events(&self, project_id: i64, order_ids: &[i64]) -> Result<HashMap<i64, Vec<StatusEvent>>, StateError> {
        self.read_order_events(project_id, order_ids).await
    }

    async fn commit(&self, batch: CommitBatch) -> Result<(), StateError> {
        if batch.events.is_empty() && batch.orders.is_empty() && batch.offsets.is_empty() {
            return Ok(());
        }
        self.commit_batch(batch).await
    }

    async fn order_ids(&self, project_id: i64, after: i64, limit: u32) -> Result<Vec<i64>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!(
                    "SELECT DISTINCT order_id FROM order_status_events WHERE project_id = $1 AND order_id > $2 ORDER BY order_id LIMIT $3"
                ),
                args![project_id, after, limit],
            )
            .await?;
        rows.iter().map(|row| row.get(0)).collect()
    }

    async fn list_orders(&self, project_id: i64, limit: u32, after: Option<(Timestamp, i64)>) -> Result<Vec<OrderSummary>, StateError> {
        let rows = match after {
            None => {
                self.db()
                    .fetch_all(
                        sql!(
                            "SELECT order_id, current_status_id, last_status_group_id, {micros:last_changed_at} AS changed_micros, \
                             event_count, settings_revision FROM orders_current WHERE project_id = $1 \
                             ORDER BY last_changed_at DESC, order_id DESC LIMIT $2"
                        ),
                        args![project_id, limit],
                    )
                    .await?
            }
            Some((last_changed_at, order_id)) => {
                self.db()
                    .fetch_all(
                        sql!(
                            "SELECT order_id, current_status_id, last_status_group_id, {micros:last_changed_at} AS changed_micros, \
                             event_count, settings_revision FROM orders_current WHERE project_id = $1 \
                             AND (last_changed_at, order_id) < ({at:$2}, $3) ORDER BY last_changed_at DESC, order_id DESC LIMIT $4"
                        ),
                        args![project_id, last_changed_at, order_id, limit],
                    )
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(OrderSummary {
                    order_id: row.get("order_id")?,
                    current_status_id: row.get("current_status_id")?,
                    current_group_id: columns::group_id(row.get("last_status_group_id")?, "last_status_group_id")?,
                    last_changed_at: row.instant("changed_micros")?,
                    event_count: columns::count(row.get("event_count")?, "event_count")?,
                    settings_revision: row.get("settings_revision")?,
                })
            })
            .collect()
    }

    async fn derived_digest(&self, project_id: i64) -> Result<String, StateError> {
        // One snapshot for both tables.
        let mut snapshot = self.db().snapshot().await?;
        let mut digest = DerivedDigest::new();
        snapshot
            .for_each(
                sql!(
                    "SELECT order_id, current_status_id, last_status_group_id, {micros:last_changed_at} AS last_changed_micros, \
                     {micros:started_at} AS started_micros, untracked_seconds, \
                     {micros:delivery_entered_at} AS delivery_entered_micros, cycle_duration_to_delivery, \
                     {micros:closed_at} AS closed_micros, cycle_rule_id_applied, urgency, sla_state, event_count, \
                     settings_revision, derived_json FROM orders_current WHERE project_id = $1 ORDER BY order_id"
                ),
                args![project_id],
                |row| {
                    digest.order(&DigestOrder {
                        order_id: row.get("order_id")?,
                        current_status_id: row.get("current_status_id")?,
                        last_status_group_id: row.get("last_status_group_id")?,
                        last_changed_at: row.get("last_changed_micros")?,
                        started_at: row.get("started_micros")?,
                        untracked_seconds: row.get("untracked_seconds")?,
                        delivery_entered_at: row.get("delivery_entered_micros")?,
                        cycle_duration_to_delivery: row.get("cycle_duration_to_delivery")?,
                        closed_at: row.get("closed_micros")?,
                        cycle_rule_id_applied: row.get("cycle_rule_id_applied")?,
                        urgency: row.get("urgency")?,
                        sla_state: row.get("sla_state")?,
                        event_count: row.get("event_count")?,
                        settings_revision: row.get("settings_revision")?,
                        derived_json: row.get("derived_json")?,
                    })
                },
            )
            .await?;
        snapshot
            .for_each(
                sql!(
                    "SELECT order_id, cycle_id, {micros:started_at} AS started_micros, {micros:ended_at} AS ended_micros, \
                     wall_seconds, working_seconds, is_open FROM order_cycle_metrics WHERE project_id = $1 ORDER BY order_id, cycle_id"
                ),
                args![project_id],
                |row| {
                    digest.cycle(&DigestCycle {
                        order_id: row.get("order_id")?,
                        cycle_id: row.get("cycle_id")?,
                        started_at: row.get("started_micros")?,
                        ended_at: row.get("ended_micros")?,
                        wall_seconds: row.get("wall_seconds")?,
                        working_seconds: row.get("working_seconds")?,
                        is_open: row.get("is_open")?,
                    });
                    Ok(())
                },
            )
            .await?;
        Ok(digest.finish())
    }

    async fn event_count(&self, project_id: i64) -> Result<u64, StateError> {
        let row = self.db().fetch_one(sql!("SELECT count(*) FROM order_status_events WHERE project_id = $1"), args![project_id]).await?;
        let count: i64 = row.get(0)?;
        u64::try_from(count).map_err(|_| StateError::Corrupt(format!("event count {count} is negative")))
    }

    async fn order_rows(&self, project_id: i64, order_ids: &[i64]) -> Result<HashMap<i64, String>, StateError> {
        let mut rows = HashMap::with_capacity(order_ids.len());
        let mut reader = self.db().reader().await?;
        for chunk in order_ids.chunks(10_000) {
            let found = reader
                .fetch_all(
                    sql!("SELECT order_id, derived_json FROM orders_current WHERE project_id = $1 AND order_id {ids:$2}"),
                    args![project_id, chunk],
                )
                .await?;
            for row in found {
                rows.insert(row.get(0)?, row.get(1)?);
            }
        }
        Ok(rows)
    }

    async fn order_rows_after(&self, project_id: i64, after: i64, limit: u32) -> Result<Vec<(i64, String)>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!(
                    "SELECT order_id, derived_json FROM orders_current WHERE project_id = $1 AND order_id > $2 ORDER BY order_id LIMIT $3"
                ),
                args![project_id, after, limit],
            )
            .await?;
        rows.iter().map(|row| Ok((row.get(0)?, row.get(1)?))).collect()
    }

    async fn order_count(&self, project_id: i64) -> Result<u64, StateError> {
        let row = self.db().fetch_one(sql!("SELECT count(*) FROM orders_current WHERE project_id = $1"), args![project_id]).await?;
        Ok(row.get::<i64, _>(0)?.max(0) as u64)
    }

    async fn earliest_order(&self, project_id: i64) -> Result<Option<Timestamp>, StateError> {
        let row = self
            .db()
            .fetch_one(
                sql!("SELECT {micros:min(started_at)} AS started_micros FROM orders_current WHERE project_id = $1"),
                args![project_id],
            )
            .await?;
        row.opt_instant("started_micros")
    }

    async fn earliest_payload(&self, project_id: i64, before: Timestamp) -> Result<Option<Timestamp>, StateError> {
        let row = self
            .db()
            .fetch_one(
                sql!(
                    "SELECT {micros:min(status_changed_at)} AS at_micros FROM order_status_events \
                     WHERE project_id = $1 AND status_changed_at < {at:$2} AND payload IS NOT NULL"
                ),
                args![project_id, before],
            )
            .await?;
        row.opt_instant("at_micros")
    }

    async fn payloads(
        &self,
        project_id: i64,
        from: Timestamp,
        to: Timestamp,
        after: (i64, Timestamp, i64),
        limit: u32,
    ) -> Result<Vec<StoredPayload>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!(
                    "SELECT order_id, {micros:status_changed_at} AS at_micros, status_id, payload FROM order_status_events \
                     WHERE project_id = $1 AND status_changed_at >= {at:$2} AND status_changed_at < {at:$3} \
                     AND payload IS NOT NULL AND (order_id, status_changed_at, status_id) > ($4, {at:$5}, $6) \
                     ORDER BY order_id, status_changed_at, status_id LIMIT $7"
                ),
                args![project_id, from, to, after.0, after.1, after.2, limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredPayload {
                    order_id: row.get("order_id")?,
                    status_changed_at: row.instant("at_micros")?,
                    status_id: row.get("status_id")?,
                    payload: row.get("payload")?,
                })
            })
            .collect()
    }

    async fn clear_payloads(&self, project_id: i64, payloads: &[StoredPayload]) -> Result<u64, StateError> {
        let mut cleared = 0;
        let mut tx = self.db().begin().await?;
        for p in payloads {
            cleared += tx
                .execute(
                    sql!(
                        "UPDATE order_status_events SET payload = NULL WHERE project_id = $1 AND order_id = $2 \
                         AND status_changed_at = {at:$3} AND status_id = $4"
                    ),
                    args![project_id, p.order_id, p.status_changed_at, p.status_id],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(cleared)
    }

    async fn restore_payloads(&self, project_id: i64, payloads: &[StoredPayload]) -> Result<u64, StateError> {
        let mut restored = 0;
        let mut tx = self.db().begin().await?;
        for p in payloads {
            restored += tx
                .execute(
                    sql!(
                        "UPDATE order_status_events SET payload = $5 WHERE project_id = $1 AND order_id = $2 \
                         AND status_changed_at = {at:$3} AND status_id = $4 AND payload IS NULL"
                    ),
                    args![project_id, p.order_id, p.status_changed_at, p.status_id, p.payload.as_str()],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(restored)
    }

    async fn prune_audit(&self, before: Timestamp) -> Result<u64, StateError> {
        self.db().execute(sql!("DELETE FROM audit_log WHERE created_at < {at:$1}"), args![before]).await
    }
}

fn latest_from_row(row: &Row) -> Result<WebhookLatest, StateError> {
    Ok(WebhookLatest {
        project_id: row.get("project_id")?,
        kind: row.get("kind")?,
        hour: row.instant("hour_micros")?,
        at: row.instant("at_micros")?,
        reason: row.get("reason")?,
    })
}

fn project_from_row(row: &Row) -> Result<Project, StateError> {
    Ok(Project {
        id: row.get("id")?,
        slug: row.get("slug")?,
        name: row.get("name")?,
        timezone: row.get("timezone")?,
        is_active: row.get("is_active")?,
        webhook_secret_hash: row.get::<Option<String>, _>("webhook_secret_hash")?.unwrap_or_default(),
        previous_secret: match (row.get::<Option<String>, _>("webhook_secret_prev_hash")?, row.opt_instant("prev_until_micros")?) {
            (Some(hash), Some(until)) => Some((hash, until)),
            _ => None,
        },
        allowed_cidrs: columns::split_cidrs(&row.get::<String, _>("allowed_cidrs")?),
    })
}
