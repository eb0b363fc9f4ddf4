//! Status dictionaries: paging `GET /order/status` into `status_dict`, and writing a project's
//! dictionary out as JSON or CSV.

use std::io::Write;

use ksa_state::enrich::{StatusEntry, StatusGroupEntry, StatusSyncReport};
use ksa_state::{EnrichStore, StateError};
use serde::Serialize;

use crate::api::parse_status_page;
use crate::client::{ApiError, ProjectClient};
use crate::{EnrichError, now};

/// Statuses per page asked for (KeyCRM's maximum).
const PAGE_LIMIT: u32 = 50;
/// A guard against an API that never says it is on the last page.
const MAX_PAGES: u32 = 200;

/// Reads every page of the project's statuses and stores them; statuses no longer listed are
/// kept and marked inactive. An empty list changes nothing (an account always has statuses; an
/// empty answer is more likely a fault than a wipe).
pub async fn sync_statuses<S: EnrichStore>(client: &ProjectClient, store: &S) -> Result<StatusSyncReport, EnrichError> {
    let mut listed: Vec<StatusEntry> = Vec::new();
    let mut page = 1;
    loop {
        let what = format!("status list page {page}");
        let body = client.get("/order/status", &[("limit", PAGE_LIMIT.to_string()), ("page", page.to_string())], &what).await?;
        let parsed = parse_status_page(&body).map_err(|reason| ApiError::Malformed {
            project: client.slug().to_owned(),
            what: what.clone(),
            reason,
        })?;
        let last = parsed.is_last();
        for status in parsed.data {
            if !listed.iter().any(|s| s.status_id == status.status_id) {
                listed.push(status);
            }
        }
        if last || page >= MAX_PAGES {
            break;
        }
        page += 1;
    }
    if listed.is_empty() {
        return Err(ApiError::Malformed {
            project: client.slug().to_owned(),
            what: "status list".into(),
            reason: "KeyCRM listed no statuses; the dictionary is left as it is".into(),
        }
        .into());
    }
    let report = store.sync_statuses(client.project_id(), &listed, now()).await?;
    tracing::info!(
        project = client.slug(),
        listed = listed.len(),
        added = report.added,
        updated = report.updated,
        deactivated = report.deactivated,
        "status dictionary synced"
    );
    Ok(report)
}

/// How `statuses export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Json,
    Csv,
}

#[derive(Serialize)]
struct ExportedStatus<'a> {
    status_id: i64,
    name: &'a str,
    alias: Option<&'a str>,
    group_id: u16,
    group_name: &'a str,
    is_active: bool,
    is_closing_order: bool,
    is_reserved: bool,
    expiration_period_seconds: Option<f64>,
}

#[derive(Serialize)]
struct Exported<'a> {
    groups: Vec<ExportedGroup<'a>>,
    statuses: Vec<ExportedStatus<'a>>,
}

#[derive(Serialize)]
struct ExportedGroup<'a> {
    group_id: u16,
    name: &'a str,
    is_terminal: bool,
    is_enabled: bool,
}

/// Writes the dictionary: JSON `{groups: [...], statuses: [...]}`, or CSV with one status per
/// row and its group's name beside its group id.
pub fn export_statuses(
    statuses: &[StatusEntry],
    groups: &[StatusGroupEntry],
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<(), StateError> {
    let group_name = |id: u16| groups.iter().find(|g| g.group_id == id).map_or("", |g| g.name.as_str());
    let rows: Vec<ExportedStatus> = statuses
        .iter()
        .map(|s| ExportedStatus {
            status_id: s.status_id,
            name: &s.name,
            alias: s.alias.as_deref(),
            group_id: s.group_id,
            group_name: group_name(s.group_id),
            is_active: s.is_active,
            is_closing_order: s.is_closing_order,
            is_reserved: s.is_reserved,
            expiration_period_seconds: s.expiration_period_seconds,
        })
        .collect();
    let io = |e: std::io::Error| StateError::Corrupt(format!("cannot write the export: {e}"));
    match format {
        ExportFormat::Json => {
            let document = Exported {
                groups: groups
                    .iter()
                    .map(|g| ExportedGroup { group_id: g.group_id, name: &g.name, is_terminal: g.is_terminal, is_enabled: g.is_enabled })
                    .collect(),
                statuses: rows,
            };
            serde_json::to_writer_pretty(&mut *out, &document).map_err(|e| StateError::Corrupt(format!("cannot write the export: {e}")))?;
            writeln!(out).map_err(io)?;
        }
        ExportFormat::Csv => {
            writeln!(out, "status_id,name,alias,group_id,group_name,is_active,is_closing_order,is_reserved,expiration_period_seconds")
                .map_err(io)?;
            for r in rows {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    r.status_id,
                    csv_field(r.name),
                    csv_field(r.alias.unwrap_or("")),
                    r.group_id,
                    csv_field(r.group_name),
                    r.is_active,
                    r.is_closing_order,
                    r.is_reserved,
                    r.expiration_period_seconds.map(|s| s.to_string()).unwrap_or_default()
                )
                .map_err(io)?;
            }
        }
    }
    Ok(())
}

/// RFC 4180 quoting, and a leading `'` before `=`, `+`, `-`, `@` so a spreadsheet does not run
/// a status name as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: i64, name: &str, group: u16) -> StatusEntry {
        StatusEntry {
            status_id: id,
            name: name.into(),
            alias: None,
            group_id: group,
            is_active: true,
            is_closing_order: false,
            is_reserved: false,
            expiration_period_seconds: None,
        }
    }

    #[test]
    fn csv_export_names_each_status_group_and_quotes_what_needs_it() {
        let groups = vec![StatusGroupEntry { group_id: 2, name: "Погодження".into(), is_terminal: false, is_enabled: true }];
        let mut out = Vec::new();
        export_statuses(&[status(20, "Матеріали, тканина", 2), status(21, "=cmd", 2)], &groups, ExportFormat::Csv, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "20,\"Матеріали, тканина\",,2,Погодження,true,false,false,");
        assert_eq!(lines[2], "21,'=cmd,,2,Погодження,true,false,false,");
    }

    #[test]
    fn json_export_holds_groups_and_statuses() {
        let mut out = Vec::new();
        export_statuses(&[status(1, "new", 1)], &[], ExportFormat::Json, &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["statuses"][0]["status_id"], 1);
        assert_eq!(value["statuses"][0]["group_name"], "");
    }
}
