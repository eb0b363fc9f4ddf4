//! Each report's table and summary. `custom` reads the orders index as the orders list does;
//! the other five read the analytics facts through the analytics queries, on whichever engine
//! serves the deployment. `docs/analytics.md` ("Reports") defines every column.

use std::collections::{BTreeMap, BTreeSet};

use ksa_schemas::ProjectSettings;
use ksa_schemas::row::RowSla;
use serde_json::{Value, json};

use super::table::{Cell, Column, Kind, Table};
use crate::analytics::params::{UrgencyFilter, urgency_name};
use crate::analytics::queries::{self, Scope, Stat, Visits, share};
use crate::orders::index::{Clocks, Entry};
use crate::orders::params::Filters;
use crate::orders::rows::Names;
use crate::orders::select::{Measured, Snapshot};

fn columns(specs: &[(&str, Kind)]) -> Vec<Column> {
    specs.iter().map(|(name, kind)| Column::new(*name, *kind)).collect()
}

fn rank(sla: RowSla) -> i64 {
    match sla {
        RowSla::None => 0,
        RowSla::Ok => 1,
        RowSla::Near => 2,
        RowSla::Over => 3,
    }
}

fn urgency(rank: i64) -> Cell {
    Cell::Text(urgency_name(rank).to_owned())
}

/// The columns every group has in `custom`.
const GROUP_COLUMNS: [(&str, Kind); 5] = [
    ("working_seconds", Kind::Float),
    ("wall_seconds", Kind::Float),
    ("visits", Kind::Int),
    ("limit_seconds", Kind::Int),
    ("sla", Kind::Sla),
];

/// `custom`: the orders that match the orders list's filters at `as_of`, one row each, with
/// the list's columns and each group's time, visits, limit and state.
pub fn custom(snapshot: &Snapshot, clocks: &mut Clocks, filters: &Filters, names: &Names, groups: &[u16]) -> Table {
    let mut specs = vec![
        Column::new("order_id", Kind::Int),
        Column::new("status_id", Kind::Int),
        Column::new("status", Kind::Text),
        Column::new("group_id", Kind::Int),
        Column::new("group", Kind::Text),
        Column::new("urgency", Kind::Text),
        Column::new("created_at", Kind::Instant),
        Column::new("changed_at", Kind::Instant),
        Column::new("open", Kind::Bool),
        Column::new("sla", Kind::Sla),
        Column::new("overdue", Kind::Bool),
        Column::new("working_seconds", Kind::Float),
        Column::new("wall_seconds", Kind::Float),
    ];
    for group in groups {
        specs.extend(GROUP_COLUMNS.iter().map(|(name, kind)| Column::new(format!("group_{group}_{name}"), *kind)));
    }
    let mut table = Table::new(specs);
    let as_of = snapshot.as_of;
    for entry in snapshot.entries() {
        if !entry.may_match(filters) {
            continue;
        }
        let m = Measured::measure(entry, clocks);
        if !m.matches(filters, as_of) {
            continue;
        }
        table.push(vec![entry.order_id], custom_cells(entry, &m, names, groups, as_of));
    }
    table
}

fn custom_cells(entry: &Entry, m: &Measured, names: &Names, groups: &[u16], as_of: i64) -> Vec<Cell> {
    let name = |text: Option<&str>| text.map_or(Cell::Null, |t| Cell::Text(t.to_owned()));
    let mut cells = vec![
        Cell::Int(entry.order_id),
        Cell::Int(entry.status_id),
        name(names.status(entry.status_id)),
        Cell::Int(i64::from(entry.group_id)),
        name(names.group(entry.group_id)),
        urgency(i64::from(entry.urgency)),
        Cell::Instant(entry.started_at),
        Cell::Instant(entry.last),
        Cell::Bool(entry.open),
        Cell::Sla(rank(m.sla(as_of))),
        Cell::Bool(m.overdue(as_of)),
        Cell::seconds(m.working()),
        Cell::seconds(m.wall()),
    ];
    for group in groups {
        match m.group(*group) {
            Some((working, wall, visits)) => {
                let limit = entry.groups.iter().find(|g| g.group_id == *group).and_then(|g| g.limit_seconds);
                cells.extend([
                    Cell::seconds(working),
                    Cell::seconds(wall),
                    Cell::Int(i64::from(visits)),
                    limit.map_or(Cell::Null, Cell::Int),
                    Cell::Sla(rank(m.group_sla(*group, as_of))),
                ]);
            }
            None => cells.extend(std::iter::repeat_n(Cell::Null, GROUP_COLUMNS.len())),
        }
    }
    cells
}

/// A report's rows and summary.
pub type Built = (Table, Value);

/// The limit of a group on the grid of an order's urgency (urgent: the urgent grid; normal
/// and pending: the normal one), in working seconds.
fn group_limit(settings: &ProjectSettings, urgency: i64, group_id: i64) -> Option<i64> {
    let grid = if urgency == 2 { &settings.sla.urgent } else { &settings.sla.normal };
    u16::try_from(group_id).ok().and_then(|g| grid.groups.get(&g).copied())
}

/// `productivity`: per group, the orders whose settled time in it is over its limit.
pub async fn productivity(scope: &Scope<'_>) -> Result<Built, String> {
    let times = queries::settled_group_times(scope).await?;
    let mut table = Table::new(columns(&[
        ("order_id", Kind::Int),
        ("group_id", Kind::Int),
        ("urgency", Kind::Text),
        ("settled_at", Kind::Instant),
        ("intervals", Kind::Int),
        ("working_seconds", Kind::Float),
        ("wall_seconds", Kind::Float),
        ("limit_seconds", Kind::Int),
        ("over_seconds", Kind::Float),
    ]));
    // Per group: settled orders, and the over-by of those over.
    let mut groups: BTreeMap<i64, (i64, Vec<f64>, i64)> = BTreeMap::new();
    let mut orders_over = BTreeSet::new();
    for t in &times {
        let group = groups.entry(t.group_id).or_default();
        group.0 += 1;
        if t.state < 3 {
            continue;
        }
        group.2 += 1;
        orders_over.insert(t.order_id);
        let limit = group_limit(scope.settings, t.urgency, t.group_id);
        let over = limit.map(|l| (t.working_us - l * 1_000_000) as f64 / 1e6);
        if let Some(over) = over {
            group.1.push(over);
        }
        table.push(
            vec![t.order_id, t.group_id],
            vec![
                Cell::Int(t.order_id),
                Cell::Int(t.group_id),
                urgency(t.urgency),
                t.settled_at.map_or(Cell::Null, Cell::Instant),
                Cell::Int(t.intervals),
                Cell::seconds(t.working_us),
                Cell::seconds(t.wall_us),
                limit.map_or(Cell::Null, Cell::Int),
                Cell::float(over),
            ],
        );
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group_id, (settled, over_by, over))| {
            json!({
                "group_id": group_id,
                "settled": settled,
                "over": over,
                "over_share": share(over, settled),
                "over_seconds": Stat::of(over_by),
            })
        })
        .collect();
    Ok((table, json!({"orders_over": orders_over.len(), "groups": groups})))
}

/// `cancellations`: the analytics query's answer, its cancelled orders as the rows.
pub async fn cancellations(scope: &Scope<'_>) -> Result<Built, String> {
    let answer = queries::cancellations(scope).await?;
    let mut table = Table::new(columns(&[
        ("order_id", Kind::Int),
        ("urgency", Kind::Text),
        ("created_at", Kind::Instant),
        ("cancelled_at", Kind::Instant),
        ("from_group_id", Kind::Int),
        ("from_status_id", Kind::Int),
        ("working_seconds", Kind::Float),
        ("wall_seconds", Kind::Float),
    ]));
    let id = |value: Option<i64>| value.map_or(Cell::Null, Cell::Int);
    for o in &answer.orders {
        table.push(
            vec![o.order_id],
            vec![
                Cell::Int(o.order_id),
                Cell::Text(o.urgency.to_owned()),
                Cell::Instant(o.created_at),
                Cell::Instant(o.cancelled_at),
                id(o.group_id),
                id(o.status_id),
                Cell::Float(o.working_seconds),
                Cell::Float(o.wall_seconds),
            ],
        );
    }
    // Without buckets the answer has one row (none without orders).
    let created: i64 = answer.rows.iter().map(|r| r.created).sum();
    let cancelled: i64 = answer.rows.iter().map(|r| r.cancelled).sum();
    let summary = json!({
        "created": created,
        "cancelled": cancelled,
        "rate": share(cancelled, created),
        "from": answer.from,
        "working_seconds": answer.working_seconds,
        "wall_seconds": answer.wall_seconds,
    });
    Ok((table, summary))
}

/// `success`: the orders that reached a completion group, on time when no group went over.
pub async fn success(scope: &Scope<'_>) -> Result<Built, String> {
    let completed = queries::completions(scope).await?;
    let mut table = Table::new(columns(&[
        ("order_id", Kind::Int),
        ("urgency", Kind::Text),
        ("created_at", Kind::Instant),
        ("completed_at", Kind::Instant),
        ("working_seconds", Kind::Float),
        ("wall_seconds", Kind::Float),
        ("worst", Kind::Sla),
        ("on_time", Kind::Bool),
    ]));
    let mut on_time = 0;
    for o in &completed {
        on_time += i64::from(o.worst < 3);
        table.push(
            vec![o.order_id],
            vec![
                Cell::Int(o.order_id),
                urgency(o.urgency),
                Cell::Instant(o.created_at),
                Cell::Instant(o.ended_at),
                Cell::seconds(o.working_us),
                Cell::seconds(o.wall_us),
                Cell::Sla(o.worst),
                Cell::Bool(o.worst < 3),
            ],
        );
    }
    let count = completed.len() as i64;
    let summary = json!({
        "completed": count,
        "on_time": on_time,
        "late": count - on_time,
        "on_time_share": share(on_time, count),
        "working_seconds": Stat::of(completed.iter().map(|o| o.working_us as f64 / 1e6).collect()),
        "wall_seconds": Stat::of(completed.iter().map(|o| o.wall_us as f64 / 1e6).collect()),
    });
    Ok((table, summary))
}

/// `sla`: per order of the period, the final state of each non-terminal group in `groups`.
pub async fn sla(scope: &Scope<'_>, groups: &[i64]) -> Result<Built, String> {
    let times = queries::order_group_times(scope).await?;
    let mut specs = columns(&[
        ("order_id", Kind::Int),
        ("urgency", Kind::Text),
        ("created_at", Kind::Instant),
        ("worst", Kind::Sla),
        ("open", Kind::Bool),
    ]);
    specs.extend(groups.iter().map(|g| Column::new(format!("group_{g}"), Kind::Sla)));
    let mut table = Table::new(specs);
    // Per order: urgency, creation, a visit still open, each group's state.
    let mut orders: BTreeMap<i64, (i64, i64, bool, BTreeMap<i64, i64>)> = BTreeMap::new();
    for t in &times {
        let order = orders.entry(t.order_id).or_insert_with(|| (t.urgency, t.created_at, false, BTreeMap::new()));
        order.2 |= t.open_visits > 0;
        order.3.insert(t.group_id, t.state);
    }
    let mut per_group: BTreeMap<i64, [i64; 4]> = groups.iter().map(|g| (*g, [0; 4])).collect();
    let mut any_over = 0;
    for (order_id, (rank, created_at, open, states)) in &orders {
        let worst = states.values().copied().max().unwrap_or(0);
        any_over += i64::from(worst >= 3);
        let mut cells = vec![Cell::Int(*order_id), urgency(*rank), Cell::Instant(*created_at), Cell::Sla(worst), Cell::Bool(*open)];
        for group in groups {
            match states.get(group) {
                Some(state) => {
                    if let Some(slot) = per_group.get_mut(group).and_then(|counts| counts.get_mut(usize::try_from(*state).unwrap_or(0))) {
                        *slot += 1;
                    }
                    cells.push(Cell::Sla(*state));
                }
                None => cells.push(Cell::Null),
            }
        }
        table.push(vec![*order_id], cells);
    }
    let count = orders.len() as i64;
    let groups: Vec<Value> = per_group
        .into_iter()
        .map(|(group_id, [none, ok, near, over])| {
            json!({"group_id": group_id, "orders": none + ok + near + over, "none": none, "ok": ok, "near": near, "over": over})
        })
        .collect();
    Ok((table, json!({"orders": count, "any_over": any_over, "any_over_share": share(any_over, count), "groups": groups})))
}

/// The urgencies `stage-time` has columns for, in order.
const URGENCIES: [&str; 3] = ["normal", "urgent", "pending"];

/// `stage-time`: per group, its closed visits' working and wall time (mean and median), of all
/// orders and per urgency.
pub async fn stage_time(scope: &Scope<'_>) -> Result<Built, String> {
    let all = queries::stages(scope, false).await?;
    let mut split_period = scope.period.clone();
    split_period.urgency = UrgencyFilter::Split;
    let split_scope = Scope { engine: scope.engine, project_id: scope.project_id, settings: scope.settings, period: &split_period };
    let split = queries::stages(&split_scope, false).await?;
    let figures = ["visits", "working_mean", "working_median", "wall_mean", "wall_median"];
    let mut specs = columns(&[("group_id", Kind::Int), ("orders", Kind::Int), ("open_visits", Kind::Int)]);
    for prefix in std::iter::once(None).chain(URGENCIES.iter().map(Some)) {
        for figure in figures {
            let name = prefix.map_or_else(|| figure.to_owned(), |u| format!("{u}_{figure}"));
            specs.push(Column::new(name, if figure == "visits" { Kind::Int } else { Kind::Float }));
        }
    }
    let cells_of = |visits: Option<&Visits>| -> Vec<Cell> {
        match visits {
            Some(v) => vec![
                Cell::Int(v.intervals),
                Cell::float(v.working_seconds.mean),
                Cell::float(v.working_seconds.median),
                Cell::float(v.wall_seconds.mean),
                Cell::float(v.wall_seconds.median),
            ],
            None => vec![Cell::Int(0), Cell::Null, Cell::Null, Cell::Null, Cell::Null],
        }
    };
    let mut groups: BTreeSet<i64> = all.rows.iter().map(|r| r.group_id).collect();
    groups.extend(split.rows.iter().map(|r| r.group_id));
    let wanted =
        |name: &str| matches!(scope.period.urgency, UrgencyFilter::All | UrgencyFilter::Split) || scope.period.urgency.name() == name;
    let mut table = Table::new(specs);
    for group in groups {
        let row = all.rows.iter().find(|r| r.group_id == group);
        let mut cells =
            vec![Cell::Int(group), Cell::Int(row.map_or(0, |r| r.figures.orders)), Cell::Int(row.map_or(0, |r| r.figures.open))];
        cells.extend(cells_of(row.map(|r| &r.figures)));
        for name in URGENCIES {
            let of = split.rows.iter().find(|r| r.group_id == group && r.split.urgency == Some(name)).filter(|_| wanted(name));
            cells.extend(cells_of(of.map(|r| &r.figures)));
        }
        table.push(vec![group], cells);
    }
    Ok((table, json!({"total": all.total})))
}
