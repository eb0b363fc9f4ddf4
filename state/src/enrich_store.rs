//! [`EnrichStore`] on either database, written once (see `sql`).

use std::collections::HashMap;

use ksa_schemas::{OrderLine, Timestamp};

use crate::StateError;
use crate::enrich::{
    ApiAccess, ApiAccessUpdate, CursorName, EnrichJob, EnrichStore, FetchedItems, JobCounts, JobState, MarketingRow, StatusEntry,
    StatusGroupEntry, StatusSyncReport,
};
use crate::sql::{Row, SqlStore, args, sql};

/// `SELECT` of an enrich job's columns, then `$tail`.
macro_rules! concat_jobs {
    ($tail:literal) => {
        concat!(
            "SELECT project_id, order_id, state, reason, attempts, {micros:next_attempt_at} AS next_attempt_micros, last_error \
             FROM enrich_jobs",
            $tail
        )
    };
}

impl<T: SqlStore + Clone + Send + Sync + 'static> EnrichStore for T {
    async fn api_access(&self, project_id: i64) -> Result<Option<ApiAccess>, StateError> {
        let row = self
            .db()
            .fetch_optional(
                sql!("SELECT id, slug, base_url, api_token_enc, api_rate_per_minute, is_active FROM projects WHERE id = $1"),
                args![project_id],
            )
            .await?;
        row.map(|row| {
            Ok(ApiAccess {
                project_id: row.get("id")?,
                slug: row.get("slug")?,
                base_url: row.get("base_url")?,
                token_enc: row.get("api_token_enc")?,
                rate_per_minute: rate(row.get("api_rate_per_minute")?)?,
                is_active: row.get("is_active")?,
            })
        })
        .transpose()
    }

    async fn update_api_access(&self, project_id: i64, update: ApiAccessUpdate) -> Result<(), StateError> {
        let mut tx = self.db().begin().await?;
        if let Some(base_url) = update.base_url {
            tx.execute(sql!("UPDATE projects SET base_url = $1, updated_at = {now} WHERE id = $2"), args![base_url, project_id]).await?;
        }
        if let Some(token) = update.token_enc {
            tx.execute(sql!("UPDATE projects SET api_token_enc = $1, updated_at = {now} WHERE id = $2"), args![token, project_id]).await?;
        }
        if let Some(hint) = update.token_hint {
            tx.execute(sql!("UPDATE projects SET api_token_hint = $1 WHERE id = $2"), args![hint, project_id]).await?;
        }
        if let Some(rate) = update.rate_per_minute {
            tx.execute(sql!("UPDATE projects SET api_rate_per_minute = $1, updated_at = {now} WHERE id = $2"), args![rate, project_id])
                .await?;
        }
        tx.commit().await
    }

    async fn sync_statuses(&self, project_id: i64, listed: &[StatusEntry], synced_at: Timestamp) -> Result<StatusSyncReport, StateError> {
        let mut tx = self.db().begin().await?;
        tx.fetch_optional(sql!("SELECT id FROM projects WHERE id = $1 {for_update}"), args![project_id]).await?;
        let stored: HashMap<i64, bool> = tx
            .fetch_all(sql!("SELECT status_id, is_active FROM status_dict WHERE project_id = $1"), args![project_id])
            .await?
            .iter()
            .map(|row| Ok((row.get("status_id")?, row.get("is_active")?)))
            .collect::<Result<_, StateError>>()?;
        let mut report = StatusSyncReport::default();
        for status in listed {
            if stored.contains_key(&status.status_id) {
                report.updated += 1;
            } else {
                report.added += 1;
            }
            tx.execute(
                sql!(
                    "INSERT INTO status_dict (project_id, status_id, name, alias, group_id, is_active, is_closing_order, \
                     is_reserved, expiration_period_seconds, synced_at) VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $8, {at:$9}) \
                     ON CONFLICT (project_id, status_id) DO UPDATE SET name = excluded.name, alias = excluded.alias, \
                     group_id = excluded.group_id, is_active = TRUE, is_closing_order = excluded.is_closing_order, \
                     is_reserved = excluded.is_reserved, expiration_period_seconds = excluded.expiration_period_seconds, \
                     synced_at = excluded.synced_at"
                ),
                args![
                    project_id,
                    status.status_id,
                    &status.name,
                    status.alias.clone(),
                    status.group_id,
                    status.is_closing_order,
                    status.is_reserved,
                    status.expiration_period_seconds,
                    synced_at
                ],
            )
            .await?;
        }
        for (status_id, active) in &stored {
            if *active && !listed.iter().any(|s| s.status_id == *status_id) {
                tx.execute(
                    sql!("UPDATE status_dict SET is_active = FALSE, synced_at = {at:$1} WHERE project_id = $2 AND status_id = $3"),
                    args![synced_at, project_id, *status_id],
                )
                .await?;
                report.deactivated += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn statuses(&self, project_id: i64) -> Result<Vec<StatusEntry>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!(
                    "SELECT status_id, name, alias, group_id, is_active, is_closing_order, is_reserved, expiration_period_seconds \
                     FROM status_dict WHERE project_id = $1 ORDER BY status_id"
                ),
                args![project_id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StatusEntry {
                    status_id: row.get("status_id")?,
                    name: row.get("name")?,
                    alias: row.get("alias")?,
                    group_id: group(row.get("group_id")?)?,
                    is_active: row.get("is_active")?,
                    is_closing_order: row.get("is_closing_order")?,
                    is_reserved: row.get("is_reserved")?,
                    expiration_period_seconds: row.get("expiration_period_seconds")?,
                })
            })
            .collect()
    }

    async fn status_groups(&self, project_id: i64) -> Result<Vec<StatusGroupEntry>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!("SELECT group_id, name, is_terminal, is_enabled FROM status_group_dict WHERE project_id = $1 ORDER BY group_id"),
                args![project_id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StatusGroupEntry {
                    group_id: group(row.get("group_id")?)?,
                    name: row.get("name")?,
                    is_terminal: row.get("is_terminal")?,
                    is_enabled: row.get("is_enabled")?,
                })
            })
            .collect()
    }

    async fn unknown_recent_statuses(&self, project_id: i64, since: Timestamp) -> Result<Vec<i64>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!(
                    "SELECT DISTINCT o.current_status_id FROM orders_current o WHERE o.project_id = $1 AND o.last_changed_at >= {at:$2} \
                     AND NOT EXISTS (SELECT 1 FROM status_dict d WHERE d.project_id = o.project_id \
                     AND d.status_id = o.current_status_id) ORDER BY 1"
                ),
                args![project_id, since],
            )
            .await?;
        rows.iter().map(|row| row.get(0)).collect()
    }

    async fn rename_status_group(&self, project_id: i64, group_id: u16, name: &str) -> Result<(), StateError> {
        self.db()
            .execute(
                sql!("UPDATE status_group_dict SET name = $1 WHERE project_id = $2 AND group_id = $3"),
                args![name, project_id, group_id],
            )
            .await?;
        Ok(())
    }

    async fn store_items(&self, items: &FetchedItems) -> Result<(), StateError> {
        let (project_id, order_id, fetched) = (items.project_id, items.order_id, items.fetched_at);
        let mut tx = self.db().begin().await?;
        tx.execute(sql!("DELETE FROM order_items WHERE project_id = $1 AND order_id = $2"), args![project_id, order_id]).await?;
        for (position, line) in items.lines.iter().enumerate() {
            tx.execute(
                sql!(
                    "INSERT INTO order_items (project_id, order_id, line_id, sku, name, quantity, price, offer_id, offer_sku, \
                     product_id, fetched_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {at:$11})"
                ),
                args![
                    project_id,
                    order_id,
                    position as i64,
                    line.sku.clone(),
                    line.name.clone(),
                    line.quantity,
                    line.price_sold,
                    line.offer_id,
                    line.offer_sku.clone(),
                    line.product_id,
                    fetched
                ],
            )
            .await?;
        }
        match &items.marketing {
            Some(m) => {
                tx.execute(
                    sql!(
                        "INSERT INTO order_marketing (project_id, order_id, utm_source, utm_medium, utm_campaign, utm_term, \
                         utm_content, fbclid, fbc, fbp, fetched_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {at:$11}) \
                         ON CONFLICT (project_id, order_id) DO UPDATE SET utm_source = excluded.utm_source, \
                         utm_medium = excluded.utm_medium, utm_campaign = excluded.utm_campaign, utm_term = excluded.utm_term, \
                         utm_content = excluded.utm_content, fbclid = excluded.fbclid, fbc = excluded.fbc, fbp = excluded.fbp, \
                         fetched_at = excluded.fetched_at"
                    ),
                    args![
                        project_id,
                        order_id,
                        m.utm_source.clone(),
                        m.utm_medium.clone(),
                        m.utm_campaign.clone(),
                        m.utm_term.clone(),
                        m.utm_content.clone(),
                        m.fbclid.clone(),
                        m.fbc.clone(),
                        m.fbp.clone(),
                        fetched
                    ],
                )
                .await?;
            }
            None => {
                tx.execute(sql!("DELETE FROM order_marketing WHERE project_id = $1 AND order_id = $2"), args![project_id, order_id])
                    .await?;
            }
        }
        tx.execute(
            sql!(
                "INSERT INTO enrich_jobs (project_id, order_id, state, next_attempt_at, fetched_at) \
                 VALUES ($1, $2, 'done', {at:$3}, {at:$3}) ON CONFLICT (project_id, order_id) DO UPDATE SET state = 'done', \
                 attempts = 0, last_error = NULL, fetched_at = excluded.fetched_at, updated_at = {now}"
            ),
            args![project_id, order_id, fetched],
        )
        .await?;
        tx.commit().await
    }

    async fn order_lines(&self, project_id: i64, order_ids: &[i64]) -> Result<HashMap<i64, Vec<OrderLine>>, StateError> {
        let mut lines: HashMap<i64, Vec<OrderLine>> = HashMap::new();
        let mut reader = self.db().reader().await?;
        for chunk in order_ids.chunks(10_000) {
            let fetched = reader
                .fetch_all(
                    sql!("SELECT order_id FROM enrich_jobs WHERE project_id = $1 AND fetched_at IS NOT NULL AND order_id {ids:$2}"),
                    args![project_id, chunk],
                )
                .await?;
            for row in fetched {
                lines.entry(row.get(0)?).or_default();
            }
            let rows = reader
                .fetch_all(
                    sql!(
                        "SELECT order_id, sku, name, quantity, price, offer_id, offer_sku, product_id FROM order_items \
                         WHERE project_id = $1 AND order_id {ids:$2} ORDER BY order_id, line_id"
                    ),
                    args![project_id, chunk],
                )
                .await?;
            for row in rows {
                let (order_id, line) = line_from_row(&row)?;
                lines.entry(order_id).or_default().push(line);
            }
        }
        Ok(lines)
    }

    async fn marketing(&self, project_id: i64, order_id: i64) -> Result<Option<MarketingRow>, StateError> {
        let row = self
            .db()
            .fetch_optional(
                sql!(
                    "SELECT utm_source, utm_medium, utm_campaign, utm_term, utm_content, fbclid, fbc, fbp FROM order_marketing \
                     WHERE project_id = $1 AND order_id = $2"
                ),
                args![project_id, order_id],
            )
            .await?;
        row.map(|row| {
            Ok(MarketingRow {
                utm_source: row.get("utm_source")?,
                utm_medium: row.get("utm_medium")?,
                utm_campaign: row.get("utm_campaign")?,
                utm_term: row.get("utm_term")?,
                utm_content: row.get("utm_content")?,
                fbclid: row.get("fbclid")?,
                fbc: row.get("fbc")?,
                fbp: row.get("fbp")?,
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
        let mut tx = self.db().begin().await?;
        tx.execute(
            sql!(
                "INSERT INTO enrich_jobs (project_id, order_id, reason, next_attempt_at) VALUES ($1, $2, $3, {at:$4}) \
                 ON CONFLICT (project_id, order_id) DO NOTHING"
            ),
            args![project_id, order_id, reason, due],
        )
        .await?;
        let row = tx
            .fetch_one(
                sql!("SELECT state FROM enrich_jobs WHERE project_id = $1 AND order_id = $2 {for_update}"),
                args![project_id, order_id],
            )
            .await?;
        let pending = match JobState::parse(&row.get::<String, _>(0)?)? {
            JobState::Pending => {
                tx.execute(
                    sql!(
                        "UPDATE enrich_jobs SET next_attempt_at = {least}(next_attempt_at, {at:$1}), updated_at = {now} \
                         WHERE project_id = $2 AND order_id = $3"
                    ),
                    args![due, project_id, order_id],
                )
                .await?;
                true
            }
            JobState::Done if refetch => {
                tx.execute(
                    sql!(
                        "UPDATE enrich_jobs SET state = 'pending', reason = $1, attempts = 0, next_attempt_at = {at:$2}, \
                         last_error = NULL, updated_at = {now} WHERE project_id = $3 AND order_id = $4"
                    ),
                    args![reason, due, project_id, order_id],
                )
                .await?;
                true
            }
            JobState::Done | JobState::Dead => false,
        };
        tx.commit().await?;
        Ok(pending)
    }

    async fn due_jobs(&self, now: Timestamp, limit: u32) -> Result<Vec<EnrichJob>, StateError> {
        let rows = self
            .db()
            .fetch_all(
                sql!(concat_jobs!(
                    " WHERE state = 'pending' AND next_attempt_at <= {at:$1} ORDER BY next_attempt_at, project_id, order_id LIMIT $2"
                )),
                args![now, limit],
            )
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn record_failure(&self, project_id: i64, order_id: i64, error: &str, retry_at: Option<Timestamp>) -> Result<(), StateError> {
        let state = if retry_at.is_some() { "pending" } else { "dead" };
        self.db()
            .execute(
                sql!(
                    "UPDATE enrich_jobs SET state = $1, attempts = attempts + 1, next_attempt_at = COALESCE({at:$2}, next_attempt_at), \
                     last_error = $3, updated_at = {now} WHERE project_id = $4 AND order_id = $5"
                ),
                args![state, retry_at, error, project_id, order_id],
            )
            .await?;
        Ok(())
    }

    async fn job(&self, project_id: i64, order_id: i64) -> Result<Option<EnrichJob>, StateError> {
        let row =
            self.db().fetch_optional(sql!(concat_jobs!(" WHERE project_id = $1 AND order_id = $2")), args![project_id, order_id]).await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn dead_jobs(&self, project_id: i64) -> Result<Vec<EnrichJob>, StateError> {
        let rows = self
            .db()
            .fetch_all(sql!(concat_jobs!(" WHERE project_id = $1 AND state = 'dead' ORDER BY order_id")), args![project_id])
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn requeue_dead(&self, project_id: i64, due: Timestamp) -> Result<u64, StateError> {
        self.db()
            .execute(
                sql!(
                    "UPDATE enrich_jobs SET state = 'pending', attempts = 0, next_attempt_at = {at:$1}, updated_at = {now} \
                     WHERE project_id = $2 AND state = 'dead'"
                ),
                args![due, project_id],
            )
            .await
    }

    async fn job_counts(&self, project_id: i64) -> Result<JobCounts, StateError> {
        let rows = self
            .db()
            .fetch_all(sql!("SELECT state, count(*) AS n FROM enrich_jobs WHERE project_id = $1 GROUP BY state"), args![project_id])
            .await?;
        let mut counts = JobCounts::default();
        for row in rows {
            let count = row.get::<i64, _>("n")?.max(0) as u64;
            match JobState::parse(&row.get::<String, _>("state")?)? {
                JobState::Pending => counts.pending = count,
                JobState::Done => counts.done = count,
                JobState::Dead => counts.dead = count,
            }
        }
        Ok(counts)
    }

    async fn cursor(&self, project_id: i64, name: CursorName) -> Result<Option<String>, StateError> {
        let row = self
            .db()
            .fetch_optional(
                sql!("SELECT cursor_json FROM enrich_cursors WHERE project_id = $1 AND name = $2"),
                args![project_id, name.as_str()],
            )
            .await?;
        row.map(|row| row.get(0)).transpose()
    }

    async fn put_cursor(&self, project_id: i64, name: CursorName, cursor: Option<&str>) -> Result<(), StateError> {
        match cursor {
            Some(cursor) => {
                self.db()
                    .execute(
                        sql!(
                            "INSERT INTO enrich_cursors (project_id, name, cursor_json) VALUES ($1, $2, $3) \
                             ON CONFLICT (project_id, name) DO UPDATE SET cursor_json = excluded.cursor_json, updated_at = {now}"
                        ),
                        args![project_id, name.as_str(), cursor],
                    )
                    .await?;
            }
            None => {
                self.db()
                    .execute(sql!("DELETE FROM enrich_cursors WHERE project_id = $1 AND name = $2"), args![project_id, name.as_str()])
                    .await?;
            }
        }
        Ok(())
    }
}

fn rate(value: Option<i64>) -> Result<Option<u32>, StateError> {
    value.map(|v| u32::try_from(v).map_err(|_| StateError::Corrupt(format!("api_rate_per_minute {v} is out of range")))).transpose()
}

pub(crate) fn group(value: i64) -> Result<u16, StateError> {
    u16::try_from(value).map_err(|_| StateError::Corrupt(format!("status group {value} is out of range")))
}

fn line_from_row(row: &Row) -> Result<(i64, OrderLine), StateError> {
    Ok((
        row.get("order_id")?,
        OrderLine {
            line_id: None,
            sku: row.get("sku")?,
            name: row.get("name")?,
            quantity: row.get("quantity")?,
            price_sold: row.get("price")?,
            offer_id: row.get("offer_id")?,
            offer_sku: row.get("offer_sku")?,
            product_id: row.get("product_id")?,
        },
    ))
}

fn job_from_row(row: &Row) -> Result<EnrichJob, StateError> {
    let attempts: i64 = row.get("attempts")?;
    Ok(EnrichJob {
        project_id: row.get("project_id")?,
        order_id: row.get("order_id")?,
        state: JobState::parse(&row.get::<String, _>("state")?)?,
        reason: row.get("reason")?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: row.instant("next_attempt_micros")?,
        last_error: row.get("last_error")?,
    })
}
