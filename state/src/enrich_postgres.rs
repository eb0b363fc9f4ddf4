//! [`EnrichStore`] on PostgreSQL. Instants cross the wire as microseconds since the Unix epoch
//! and are converted in SQL, as in `postgres.rs`.

use std::collections::HashMap;

use ksa_schemas::{OrderLine, Timestamp};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::enrich::{
    ApiAccess, ApiAccessUpdate, CursorName, EnrichJob, EnrichStore, FetchedItems, JobCounts, JobState, MarketingRow, StatusEntry,
    StatusGroupEntry, StatusSyncReport,
};
use crate::enrich_sqlite::{group, job_counts};
use crate::{PostgresState, StateError};

/// The instant `$n` microseconds after the Unix epoch.
macro_rules! instant {
    ($micros:literal) => {
        concat!("(TIMESTAMPTZ 'epoch' + ", $micros, "::bigint * INTERVAL '1 microsecond')")
    };
}

/// Microseconds since the Unix epoch of a TIMESTAMPTZ column.
macro_rules! micros {
    ($column:literal) => {
        concat!("(EXTRACT(EPOCH FROM ", $column, ") * 1000000)::bigint")
    };
}

const SELECT_ACCESS: &str = "SELECT id, slug, base_url, api_token_enc, api_rate_per_minute, is_active FROM projects WHERE id = $1";

const SELECT_STATUSES: &str = "SELECT status_id, name, alias, group_id, is_active, is_closing_order, is_reserved, \
     expiration_period_seconds FROM status_dict WHERE project_id = $1 ORDER BY status_id";

const UPSERT_STATUS: &str = concat!(
    "INSERT INTO status_dict (project_id, status_id, name, alias, group_id, is_active, is_closing_order, \
     is_reserved, expiration_period_seconds, synced_at) VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $8, ",
    instant!("$9"),
    ") ON CONFLICT (project_id, status_id) DO UPDATE SET name = excluded.name, alias = excluded.alias, group_id = excluded.group_id, \
     is_active = TRUE, is_closing_order = excluded.is_closing_order, is_reserved = excluded.is_reserved, \
     expiration_period_seconds = excluded.expiration_period_seconds, synced_at = excluded.synced_at"
);

const SELECT_JOB_COLUMNS: &str = concat!(
    "SELECT project_id, order_id, state, reason, attempts, ",
    micros!("next_attempt_at"),
    " AS next_attempt_micros, last_error FROM enrich_jobs"
);

impl EnrichStore for PostgresState {
    async fn api_access(&self, project_id: i64) -> Result<Option<ApiAccess>, StateError> {
        let row = sqlx::query(SELECT_ACCESS).bind(project_id).fetch_optional(self.pool()).await?;
        row.map(|row| {
            let rate: Option<i64> = row.try_get("api_rate_per_minute")?;
            Ok(ApiAccess {
                project_id: row.try_get("id")?,
                slug: row.try_get("slug")?,
                base_url: row.try_get("base_url")?,
                token_enc: row.try_get("api_token_enc")?,
                rate_per_minute: rate
                    .map(|v| u32::try_from(v).map_err(|_| StateError::Corrupt(format!("api_rate_per_minute {v} is out of range"))))
                    .transpose()?,
                is_active: row.try_get("is_active")?,
            })
        })
        .transpose()
    }

    async fn update_api_access(&self, project_id: i64, update: ApiAccessUpdate) -> Result<(), StateError> {
        let mut tx = self.pool().begin().await?;
        if let Some(base_url) = &update.base_url {
            sqlx::query("UPDATE projects SET base_url = $1 WHERE id = $2").bind(base_url).bind(project_id).execute(&mut *tx).await?;
        }
        if let Some(token) = &update.token_enc {
            sqlx::query("UPDATE projects SET api_token_enc = $1 WHERE id = $2").bind(token).bind(project_id).execute(&mut *tx).await?;
        }
        if let Some(rate) = update.rate_per_minute {
            sqlx::query("UPDATE projects SET api_rate_per_minute = $1 WHERE id = $2")
                .bind(rate.map(i64::from))
                .bind(project_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn sync_statuses(&self, project_id: i64, listed: &[StatusEntry], synced_at: Timestamp) -> Result<StatusSyncReport, StateError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT id FROM projects WHERE id = $1 FOR UPDATE").bind(project_id).fetch_optional(&mut *tx).await?;
        let stored: Vec<(i64, bool)> = sqlx::query_as("SELECT status_id, is_active FROM status_dict WHERE project_id = $1")
            .bind(project_id)
            .fetch_all(&mut *tx)
            .await?;
        let stored: HashMap<i64, bool> = stored.into_iter().collect();
        let mut report = StatusSyncReport::default();
        for status in listed {
            if stored.contains_key(&status.status_id) {
                report.updated += 1;
            } else {
                report.added += 1;
            }
            sqlx::query(UPSERT_STATUS)
                .bind(project_id)
                .bind(status.status_id)
                .bind(&status.name)
                .bind(&status.alias)
                .bind(i64::from(status.group_id))
                .bind(status.is_closing_order)
                .bind(status.is_reserved)
                .bind(status.expiration_period_seconds)
                .bind(synced_at.as_micros())
                .execute(&mut *tx)
                .await?;
        }
        for (status_id, active) in &stored {
            if *active && !listed.iter().any(|s| s.status_id == *status_id) {
                sqlx::query(concat!(
                    "UPDATE status_dict SET is_active = FALSE, synced_at = ",
                    instant!("$1"),
                    " WHERE project_id = $2 AND status_id = $3"
                ))
                .bind(synced_at.as_micros())
                .bind(project_id)
                .bind(status_id)
                .execute(&mut *tx)
                .await?;
                report.deactivated += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn statuses(&self, project_id: i64) -> Result<Vec<StatusEntry>, StateError> {
        let rows = sqlx::query(SELECT_STATUSES).bind(project_id).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| {
                Ok(StatusEntry {
                    status_id: row.try_get("status_id")?,
                    name: row.try_get("name")?,
                    alias: row.try_get("alias")?,
                    group_id: group(row.try_get("group_id")?)?,
                    is_active: row.try_get("is_active")?,
                    is_closing_order: row.try_get("is_closing_order")?,
                    is_reserved: row.try_get("is_reserved")?,
                    expiration_period_seconds: row.try_get("expiration_period_seconds")?,
                })
            })
            .collect()
    }

    async fn status_groups(&self, project_id: i64) -> Result<Vec<StatusGroupEntry>, StateError> {
        let rows: Vec<(i64, String, bool, bool)> =
            sqlx::query_as("SELECT group_id, name, is_terminal, is_enabled FROM status_group_dict WHERE project_id = $1 ORDER BY group_id")
                .bind(project_id)
                .fetch_all(self.pool())
                .await?;
        rows.into_iter()
            .map(|(group_id, name, is_terminal, is_enabled)| {
                Ok(StatusGroupEntry { group_id: group(group_id)?, name, is_terminal, is_enabled })
            })
            .collect()
    }

    async fn unknown_recent_statuses(&self, project_id: i64, since: Timestamp) -> Result<Vec<i64>, StateError> {
        Ok(sqlx::query_scalar(concat!(
            "SELECT DISTINCT o.current_status_id FROM orders_current o WHERE o.project_id = $1 AND o.last_changed_at >= ",
            instant!("$2"),
            " AND NOT EXISTS (SELECT 1 FROM status_dict d WHERE d.project_id = o.project_id AND d.status_id = o.current_status_id) \
             ORDER BY 1"
        ))
        .bind(project_id)
        .bind(since.as_micros())
        .fetch_all(self.pool())
        .await?)
    }

    async fn rename_status_group(&self, project_id: i64, group_id: u16, name: &str) -> Result<(), StateError> {
        sqlx::query("UPDATE status_group_dict SET name = $1 WHERE project_id = $2 AND group_id = $3")
            .bind(name)
            .bind(project_id)
            .bind(i64::from(group_id))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn store_items(&self, items: &FetchedItems) -> Result<(), StateError> {
        let fetched = items.fetched_at.as_micros();
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM order_items WHERE project_id = $1 AND order_id = $2")
            .bind(items.project_id)
            .bind(items.order_id)
            .execute(&mut *tx)
            .await?;
        if !items.lines.is_empty() {
            let lines = &items.lines;
            sqlx::query(concat!(
                "INSERT INTO order_items (project_id, order_id, line_id, sku, name, quantity, price, offer_id, offer_sku, product_id, \
                 fetched_at) SELECT $1, $2, l, s, n, q, p, o, os, pr, ",
                instant!("$11"),
                " FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::float8[], $7::float8[], $8::bigint[], $9::text[], $10::bigint[]) \
                 AS u(l, s, n, q, p, o, os, pr)"
            ))
            .bind(items.project_id)
            .bind(items.order_id)
            .bind((0..lines.len() as i64).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.price_sold).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.offer_id).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.offer_sku.clone()).collect::<Vec<_>>())
            .bind(lines.iter().map(|l| l.product_id).collect::<Vec<_>>())
            .bind(fetched)
            .execute(&mut *tx)
            .await?;
        }
        match &items.marketing {
            Some(m) => {
                sqlx::query(concat!(
                    "INSERT INTO order_marketing (project_id, order_id, utm_source, utm_medium, utm_campaign, utm_term, utm_content, \
                     fbclid, fbc, fbp, fetched_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ",
                    instant!("$11"),
                    ") ON CONFLICT (project_id, order_id) DO UPDATE SET utm_source = excluded.utm_source, utm_medium = excluded.utm_medium, \
                     utm_campaign = excluded.utm_campaign, utm_term = excluded.utm_term, utm_content = excluded.utm_content, \
                     fbclid = excluded.fbclid, fbc = excluded.fbc, fbp = excluded.fbp, fetched_at = excluded.fetched_at"
                ))
                .bind(items.project_id)
                .bind(items.order_id)
                .bind(&m.utm_source)
                .bind(&m.utm_medium)
                .bind(&m.utm_campaign)
                .bind(&m.utm_term)
                .bind(&m.utm_content)
                .bind(&m.fbclid)
                .bind(&m.fbc)
                .bind(&m.fbp)
                .bind(fetched)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM order_marketing WHERE project_id = $1 AND order_id = $2")
                    .bind(items.project_id)
                    .bind(items.order_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(concat!(
            "INSERT INTO enrich_jobs (project_id, order_id, state, next_attempt_at, fetched_at) VALUES ($1, $2, 'done', ",
            instant!("$3"),
            ", ",
            instant!("$3"),
            ") ON CONFLICT (project_id, order_id) DO UPDATE SET state = 'done', attempts = 0, last_error = NULL, \
             fetched_at = excluded.fetched_at, updated_at = now()"
        ))
        .bind(items.project_id)
        .bind(items.order_id)
        .bind(fetched)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn order_lines(&self, project_id: i64, order_ids: &[i64]) -> Result<HashMap<i64, Vec<OrderLine>>, StateError> {
        let mut lines: HashMap<i64, Vec<OrderLine>> = HashMap::new();
        let fetched: Vec<i64> = sqlx::query_scalar(
            "SELECT order_id FROM enrich_jobs WHERE project_id = $1 AND fetched_at IS NOT NULL AND order_id = ANY($2::bigint[])",
        )
        .persistent(false)
        .bind(project_id)
        .bind(order_ids)
        .fetch_all(self.pool())
        .await?;
        for order_id in fetched {
            lines.entry(order_id).or_default();
        }
        let rows = sqlx::query(
            "SELECT order_id, sku, name, quantity, price, offer_id, offer_sku, product_id FROM order_items \
             WHERE project_id = $1 AND order_id = ANY($2::bigint[]) ORDER BY order_id, line_id",
        )
        .persistent(false)
        .bind(project_id)
        .bind(order_ids)
        .fetch_all(self.pool())
        .await?;
        for row in rows {
            let (order_id, line) = line_from_row(&row)?;
            lines.entry(order_id).or_default().push(line);
        }
        Ok(lines)
    }

    async fn marketing(&self, project_id: i64, order_id: i64) -> Result<Option<MarketingRow>, StateError> {
        let row = sqlx::query(
            "SELECT utm_source, utm_medium, utm_campaign, utm_term, utm_content, fbclid, fbc, fbp FROM order_marketing \
             WHERE project_id = $1 AND order_id = $2",
        )
        .bind(project_id)
        .bind(order_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(MarketingRow {
                utm_source: row.try_get("utm_source")?,
                utm_medium: row.try_get("utm_medium")?,
                utm_campaign: row.try_get("utm_campaign")?,
                utm_term: row.try_get("utm_term")?,
                utm_content: row.try_get("utm_content")?,
                fbclid: row.try_get("fbclid")?,
                fbc: row.try_get("fbc")?,
                fbp: row.try_get("fbp")?,
            })
        })
        .transpose()
    }

    async fn schedule_fetch(
        &self,
        project_id: i64,
        order_id: i64,
        reason: &str,
        due: Timestamp,
        refetch: bool,
    ) -> Result<bool, StateError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(concat!(
            "INSERT INTO enrich_jobs (project_id, order_id, reason, next_attempt_at) VALUES ($1, $2, $3, ",
            instant!("$4"),
            ") ON CONFLICT (project_id, order_id) DO NOTHING"
        ))
        .bind(project_id)
        .bind(order_id)
        .bind(reason)
        .bind(due.as_micros())
        .execute(&mut *tx)
        .await?;
        let state: String = sqlx::query_scalar("SELECT state FROM enrich_jobs WHERE project_id = $1 AND order_id = $2 FOR UPDATE")
            .bind(project_id)
            .bind(order_id)
            .fetch_one(&mut *tx)
            .await?;
        let pending = match JobState::parse(&state)? {
            JobState::Pending => {
                sqlx::query(concat!(
                    "UPDATE enrich_jobs SET next_attempt_at = LEAST(next_attempt_at, ",
                    instant!("$1"),
                    "), updated_at = now() WHERE project_id = $2 AND order_id = $3"
                ))
                .bind(due.as_micros())
                .bind(project_id)
                .bind(order_id)
                .execute(&mut *tx)
                .await?;
                true
            }
            JobState::Done if refetch => {
                sqlx::query(concat!(
                    "UPDATE enrich_jobs SET state = 'pending', reason = $1, attempts = 0, next_attempt_at = ",
                    instant!("$2"),
                    ", last_error = NULL, updated_at = now() WHERE project_id = $3 AND order_id = $4"
                ))
                .bind(reason)
                .bind(due.as_micros())
                .bind(project_id)
                .bind(order_id)
                .execute(&mut *tx)
                .await?;
                true
            }
            JobState::Done | JobState::Dead => false,
        };
        tx.commit().await?;
        Ok(pending)
    }

    async fn due_jobs(&self, now: Timestamp, limit: u32) -> Result<Vec<EnrichJob>, StateError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_JOB_COLUMNS} WHERE state = 'pending' AND next_attempt_at <= {} \
             ORDER BY next_attempt_at, project_id, order_id LIMIT $2",
            instant!("$1")
        )))
        .bind(now.as_micros())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn record_failure(&self, project_id: i64, order_id: i64, error: &str, retry_at: Option<Timestamp>) -> Result<(), StateError> {
        let (state, next) = match retry_at {
            Some(at) => ("pending", Some(at.as_micros())),
            None => ("dead", None),
        };
        sqlx::query(concat!(
            "UPDATE enrich_jobs SET state = $1, attempts = attempts + 1, next_attempt_at = COALESCE(",
            instant!("$2"),
            ", next_attempt_at), last_error = $3, updated_at = now() WHERE project_id = $4 AND order_id = $5"
        ))
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(project_id)
        .bind(order_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn job(&self, project_id: i64, order_id: i64) -> Result<Option<EnrichJob>, StateError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_JOB_COLUMNS} WHERE project_id = $1 AND order_id = $2")))
            .bind(project_id)
            .bind(order_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn dead_jobs(&self, project_id: i64) -> Result<Vec<EnrichJob>, StateError> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT_JOB_COLUMNS} WHERE project_id = $1 AND state = 'dead' ORDER BY order_id")))
                .bind(project_id)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn requeue_dead(&self, project_id: i64, due: Timestamp) -> Result<u64, StateError> {
        let done = sqlx::query(concat!(
            "UPDATE enrich_jobs SET state = 'pending', attempts = 0, next_attempt_at = ",
            instant!("$1"),
            ", updated_at = now() WHERE project_id = $2 AND state = 'dead'"
        ))
        .bind(due.as_micros())
        .bind(project_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn job_counts(&self, project_id: i64) -> Result<JobCounts, StateError> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, count(*) FROM enrich_jobs WHERE project_id = $1 GROUP BY state")
            .bind(project_id)
            .fetch_all(self.pool())
            .await?;
        job_counts(rows)
    }

    async fn cursor(&self, project_id: i64, name: CursorName) -> Result<Option<String>, StateError> {
        Ok(sqlx::query_scalar("SELECT cursor_json FROM enrich_cursors WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await?)
    }

    async fn put_cursor(&self, project_id: i64, name: CursorName, cursor: Option<&str>) -> Result<(), StateError> {
        match cursor {
            Some(cursor) => {
                sqlx::query(
                    "INSERT INTO enrich_cursors (project_id, name, cursor_json) VALUES ($1, $2, $3) \
                     ON CONFLICT (project_id, name) DO UPDATE SET cursor_json = excluded.cursor_json, updated_at = now()",
                )
                .bind(project_id)
                .bind(name.as_str())
                .bind(cursor)
                .execute(self.pool())
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM enrich_cursors WHERE project_id = $1 AND name = $2")
                    .bind(project_id)
                    .bind(name.as_str())
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(())
    }
}

fn line_from_row(row: &PgRow) -> Result<(i64, OrderLine), StateError> {
    Ok((
        row.try_get("order_id")?,
        OrderLine {
            line_id: None,
            sku: row.try_get("sku")?,
            name: row.try_get("name")?,
            quantity: row.try_get("quantity")?,
            price_sold: row.try_get("price")?,
            offer_id: row.try_get("offer_id")?,
            offer_sku: row.try_get("offer_sku")?,
            product_id: row.try_get("product_id")?,
        },
    ))
}

fn job_from_row(row: &PgRow) -> Result<EnrichJob, StateError> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(EnrichJob {
        project_id: row.try_get("project_id")?,
        order_id: row.try_get("order_id")?,
        state: JobState::parse(row.try_get("state")?)?,
        reason: row.try_get("reason")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: Timestamp::from_micros(row.try_get("next_attempt_micros")?),
        last_error: row.try_get("last_error")?,
    })
}
