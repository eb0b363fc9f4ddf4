//! The five analytics queries: `stages`, `cycles`, `sla`, `throughput` and `cancellations`.
//! Each builds its SQL from [`super::sql`], runs it on whichever engine serves the project and
//! shapes the rows into the same typed answer, so routes, JSON and CSV exist once.

use std::collections::{BTreeMap, HashMap};

use ksa_domain::quantile::nearest_rank;
use ksa_schemas::ProjectSettings;
use serde::Serialize;

use super::engine::{AnalyticsEngine, Row};
use super::params::{By, Period, UrgencyFilter, urgency_name};
use super::sql::{Key, MICROS, Stats, counts, group_totals, group_visits, one_of};

/// Sum, mean and quantiles of durations in seconds; all but `sum` are null over no values.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stat {
    pub sum: f64,
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
}

impl Stat {
    /// From a [`Stats`] row: `n` values, columns `{prefix}_sum_us`, `_max`, `_q50`, `_q90`, `_q95`.
    fn from_row(row: &Row, prefix: &str) -> Stat {
        let n = int(row, "n");
        if n == 0 {
            return Stat::default();
        }
        let sum_us = int(row, &format!("{prefix}_sum_us"));
        Stat {
            sum: sum_us as f64 / MICROS as f64,
            mean: Some(mean(sum_us, n)),
            median: float(row, &format!("{prefix}_q50")),
            p90: float(row, &format!("{prefix}_q90")),
            p95: float(row, &format!("{prefix}_q95")),
            max: float(row, &format!("{prefix}_max")),
        }
    }

    /// Of values at hand, by the same rules (sums in whole microseconds, nearest rank).
    pub fn of(mut values: Vec<f64>) -> Stat {
        if values.is_empty() {
            return Stat::default();
        }
        values.sort_by(f64::total_cmp);
        let sum_us: i64 = values.iter().map(|v| (v * MICROS as f64).round() as i64).sum();
        Stat {
            sum: sum_us as f64 / MICROS as f64,
            mean: Some(mean(sum_us, values.len() as i64)),
            median: nearest_rank(&values, 50),
            p90: nearest_rank(&values, 90),
            p95: nearest_rank(&values, 95),
            max: values.last().copied(),
        }
    }
}

/// The mean of `n` values summing to `sum_us` microseconds, in seconds to the microsecond.
fn mean(sum_us: i64, n: i64) -> f64 {
    (sum_us as f64 / n as f64).round() / MICROS as f64
}

/// `part / whole` to six decimals; null when `whole` is 0.
pub fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 1e6).round() / 1e6)
}

fn int(row: &Row, name: &str) -> i64 {
    row.get(name).and_then(serde_json::Value::as_i64).unwrap_or(0)
}

fn opt_int(row: &Row, name: &str) -> Option<i64> {
    row.get(name).and_then(serde_json::Value::as_i64)
}

fn float(row: &Row, name: &str) -> Option<f64> {
    row.get(name).and_then(serde_json::Value::as_f64)
}

const VALUES: &[(&str, &str)] = &[("working", "working_seconds"), ("wall", "wall_seconds")];

/// What every query needs: the engine, the project and its settings, the period.
pub struct Scope<'a> {
    pub engine: &'a dyn AnalyticsEngine,
    pub project_id: i64,
    pub settings: &'a ProjectSettings,
    pub period: &'a Period,
}

impl Scope<'_> {
    async fn rows(&self, sql: &str) -> Result<Vec<Row>, String> {
        self.engine.rows(self.project_id, sql).await
    }

    /// The settings' terminal groups: their clock is stopped.
    pub fn terminal(&self) -> Vec<i64> {
        self.settings.terminal_groups.iter().map(|g| i64::from(*g)).collect()
    }

    /// The terminal groups that mean the order was cancelled (from the settings).
    pub fn cancellation(&self) -> Vec<i64> {
        self.settings.cancellation_groups.iter().map(|g| i64::from(*g)).collect()
    }

    /// The terminal groups that mean the order was completed (from the settings).
    pub fn completion(&self) -> Vec<i64> {
        self.settings.completion_groups.iter().map(|g| i64::from(*g)).collect()
    }

    /// The column that places a row in the period: the order's creation, or the row's own
    /// start (`entered`: `entered_at` of intervals and visits, `started_at` of cycles).
    fn placed_by(&self, entered: &'static str) -> &'static str {
        match self.period.by {
            By::Created => "created_at",
            By::Entered => entered,
        }
    }

    /// The intervals, and the column that places one in the period.
    fn intervals(&self) -> (String, &'static str) {
        (self.engine.dialect().intervals(self.project_id), self.placed_by("entered_at"))
    }

    /// The visits to groups ([`group_visits`]), placed in the period as [`Scope::intervals`].
    fn visits(&self) -> (String, &'static str) {
        (group_visits(self.engine.dialect(), self.project_id), self.placed_by("entered_at"))
    }

    /// Period, urgency, groups and statuses as a condition on intervals placed by `time`.
    fn interval_filter(&self, time: &str) -> String {
        let period = self.period;
        let mut parts = vec![period.span.contains(time), period.urgency.condition().to_owned()];
        if !period.groups.is_empty() {
            parts.push(one_of("group_id", &period.groups, "1 = 1"));
        }
        if !period.statuses.is_empty() {
            parts.push(one_of("status_id", &period.statuses, "1 = 1"));
        }
        parts.join(" AND ")
    }

    /// Keys of the bucket (by `time`) and of urgency, when asked for.
    fn split_keys(&self, time: &str) -> Vec<Key> {
        let mut keys = Vec::new();
        if self.period.bucketed() {
            keys.push(Key::new("bucket", self.period.bucket_of(time)));
        }
        if self.period.urgency == UrgencyFilter::Split {
            keys.push(Key::new("urgency", "urgency"));
        }
        keys
    }

    fn split_of(&self, row: &Row) -> Split {
        Split {
            bucket: if self.period.bucketed() { self.period.bucket_label(int(row, "bucket")) } else { None },
            urgency: (self.period.urgency == UrgencyFilter::Split).then(|| urgency_name(int(row, "urgency"))),
        }
    }
}

/// Where a row belongs when the answer is split by bucket or urgency.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Split {
    /// The bucket's first day, `YYYY-MM-DD` (with `bucket=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// With `urgency=split`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urgency: Option<&'static str>,
}

/// The values of `names` in `row`, as a key to match rows of two queries.
fn key_of(row: &Row, names: &[&str]) -> Vec<i64> {
    names.iter().map(|name| int(row, name)).collect()
}

fn names(keys: &[Key]) -> Vec<&'static str> {
    keys.iter().map(|k| k.name).collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageRow {
    pub group_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_id: Option<i64>,
    #[serde(flatten)]
    pub split: Split,
    #[serde(flatten)]
    pub figures: Visits,
}

/// What `stages` measures of a set of visits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Visits {
    /// Closed visits measured.
    pub intervals: i64,
    /// Orders with a closed visit measured.
    pub orders: i64,
    /// Visits still open at the time of the query, not measured.
    pub open: i64,
    pub working_seconds: Stat,
    pub wall_seconds: Stat,
}

impl Visits {
    /// From a [`Stats`] row.
    fn from_row(row: &Row) -> Visits {
        Visits {
            intervals: int(row, "n"),
            orders: int(row, "orders"),
            open: int(row, "open_rows"),
            working_seconds: Stat::from_row(row, "working"),
            wall_seconds: Stat::from_row(row, "wall"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StagesAnswer {
    pub rows: Vec<StageRow>,
    /// Every measured visit of the period at once: the total time of all orders in it.
    pub total: Visits,
}

/// `stages`: per group (or status), each closed visit's working and wall time.
///
/// Per group, a visit is the order's consecutive intervals in the group; per status (or with a
/// `status` filter), each status interval is a visit of its status.
pub async fn stages(scope: &Scope<'_>, per_status: bool) -> Result<StagesAnswer, String> {
    let (rows, time) = if per_status || !scope.period.statuses.is_empty() { scope.intervals() } else { scope.visits() };
    let filter = format!("{} AND NOT ({})", scope.interval_filter(time), one_of("group_id", &scope.terminal(), "1 = 0"));
    let mut keys = vec![Key::new("group_id", "group_id")];
    if per_status {
        keys.push(Key::new("status_id", "status_id"));
    }
    keys.extend(scope.split_keys(time));
    let dialect = scope.engine.dialect();
    let stats =
        |keys: Vec<Key>| Stats { rows: rows.clone(), filter: filter.clone(), measured: "left_at IS NOT NULL", keys, values: VALUES };
    let key_names = names(&keys);
    let mut answer: BTreeMap<Vec<i64>, StageRow> = BTreeMap::new();
    for row in scope.rows(&stats(keys.clone()).sql(dialect)).await? {
        let stage = StageRow {
            group_id: int(&row, "group_id"),
            status_id: per_status.then(|| int(&row, "status_id")),
            split: scope.split_of(&row),
            figures: Visits::from_row(&row),
        };
        answer.insert(key_of(&row, &key_names), stage);
    }
    let total_row = scope.rows(&stats(Vec::new()).sql(dialect)).await?.into_iter().next().unwrap_or_default();
    let total = Visits::from_row(&total_row);
    Ok(StagesAnswer { rows: answer.into_values().collect(), total })
}

/// Upper edges of the cycle histogram's bins, in working hours; the last bin is open-ended.
pub const HISTOGRAM_HOURS: [i64; 9] = [1, 2, 4, 8, 16, 24, 40, 80, 160];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bin {
    pub from_hours: i64,
    /// Exclusive; null for the last bin.
    pub to_hours: Option<i64>,
    pub cycles: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CycleRow {
    pub cycle_id: i64,
    pub title: Option<String>,
    #[serde(flatten)]
    pub split: Split,
    pub completed: i64,
    pub open: i64,
    pub working_seconds: Stat,
    pub wall_seconds: Stat,
    /// Completed cycles by working hours.
    pub histogram: Vec<Bin>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CyclesAnswer {
    pub rows: Vec<CycleRow>,
}

/// `cycles`: per cycle rule, completed cycles' working and wall time, open ones counted.
pub async fn cycles(scope: &Scope<'_>) -> Result<CyclesAnswer, String> {
    let dialect = scope.engine.dialect();
    let (rows, time) = (dialect.cycles(scope.project_id), scope.placed_by("started_at"));
    let filter = format!("{} AND {}", scope.period.span.contains(time), scope.period.urgency.condition());
    let mut keys = vec![Key::new("cycle_id", "cycle_id")];
    keys.extend(scope.split_keys(time));
    let key_names = names(&keys);
    let closed = format!("{filter} AND ended_at IS NOT NULL");
    let stats = Stats { rows: rows.clone(), filter: filter.clone(), measured: "ended_at IS NOT NULL", keys: keys.clone(), values: VALUES }
        .sql(dialect);
    let edges: Vec<i64> = HISTOGRAM_HOURS.iter().map(|h| h * 3600).collect();
    let mut bin_keys = keys.clone();
    bin_keys.push(Key::new("bin", super::sql::bucket_expr("working_seconds", &[&[0], &edges[..]].concat())));
    let mut bins: HashMap<Vec<i64>, Vec<i64>> = HashMap::new();
    for row in scope.rows(&counts(&rows, &closed, &bin_keys)).await? {
        let counts = bins.entry(key_of(&row, &key_names)).or_insert_with(|| vec![0; HISTOGRAM_HOURS.len() + 1]);
        if let Some(slot) = usize::try_from(int(&row, "bin")).ok().and_then(|bin| counts.get_mut(bin)) {
            *slot = int(&row, "n");
        }
    }
    let title = |id: i64| scope.settings.cycles.iter().find(|c| i64::from(c.id) == id).map(|c| c.title.clone());
    let histogram = |counts: Option<&Vec<i64>>| -> Vec<Bin> {
        (0..=HISTOGRAM_HOURS.len())
            .map(|i| Bin {
                from_hours: if i == 0 { 0 } else { HISTOGRAM_HOURS[i - 1] },
                to_hours: HISTOGRAM_HOURS.get(i).copied(),
                cycles: counts.map_or(0, |c| c[i]),
            })
            .collect()
    };
    let mut answer: BTreeMap<Vec<i64>, CycleRow> = BTreeMap::new();
    for row in scope.rows(&stats).await? {
        let key = key_of(&row, &key_names);
        let cycle = CycleRow {
            cycle_id: int(&row, "cycle_id"),
            title: title(int(&row, "cycle_id")),
            split: scope.split_of(&row),
            completed: int(&row, "n"),
            open: int(&row, "open_rows"),
            working_seconds: Stat::from_row(&row, "working"),
            wall_seconds: Stat::from_row(&row, "wall"),
            histogram: histogram(bins.get(&key)),
        };
        answer.insert(key, cycle);
    }
    Ok(CyclesAnswer { rows: answer.into_values().collect() })
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SlaCounts {
    pub orders: i64,
    pub ok: i64,
    pub near: i64,
    pub over: i64,
    /// Shares of `orders`, from 0 to 1 (null without orders).
    pub ok_share: Option<f64>,
    pub near_share: Option<f64>,
    pub over_share: Option<f64>,
}

impl SlaCounts {
    fn from_row(row: &Row) -> SlaCounts {
        let orders = int(row, "orders");
        let share = |n: i64| share(n, orders);
        let (ok, near, over) = (int(row, "ok"), int(row, "near"), int(row, "over"));
        SlaCounts { orders, ok, near, over, ok_share: share(ok), near_share: share(near), over_share: share(over) }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlaRow {
    pub group_id: i64,
    #[serde(flatten)]
    pub split: Split,
    #[serde(flatten)]
    pub counts: SlaCounts,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnyOver {
    #[serde(flatten)]
    pub split: Split,
    /// Orders with at least one group settled in the period (placed by the last one).
    pub orders: i64,
    /// Of them, orders with any settled group over its limit.
    pub over: i64,
    pub over_share: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlaAnswer {
    pub rows: Vec<SlaRow>,
    pub any_over: Vec<AnyOver>,
}

/// Group totals (of [`group_totals`]) settled in the period: no visit open, the last one ended
/// in it; of the period's urgency and groups.
fn settled_filter(period: &Period) -> String {
    format!(
        "open_visits = 0 AND {} AND {} AND {}",
        period.span.contains("settled_at"),
        period.urgency.condition(),
        one_of("group_id", &period.groups, "1 = 1")
    )
}

/// `sla`: per group and bucket, the orders whose time in the group settled in it (no visit
/// open, the last one ended in the period), by the group's final state.
pub async fn sla(scope: &Scope<'_>) -> Result<SlaAnswer, String> {
    let dialect = scope.engine.dialect();
    let period = scope.period;
    let settled = group_totals(dialect, scope.project_id, &scope.terminal());
    let filter = settled_filter(period);
    let mut keys = vec![Key::new("group_id", "group_id")];
    keys.extend(scope.split_keys("settled_at"));
    let key_names = names(&keys);
    let states = "sum(CASE WHEN state = 1 THEN 1 ELSE 0 END) AS ok, sum(CASE WHEN state = 2 THEN 1 ELSE 0 END) AS near, \
                  sum(CASE WHEN state = 3 THEN 1 ELSE 0 END) AS over";
    let select: Vec<String> = keys.iter().map(|k| format!("{} AS {}", k.expr, k.name)).collect();
    let sql = format!(
        "SELECT {names}, count(*) AS orders, {states} FROM (SELECT {select}, state FROM {settled} AS s WHERE {filter}) AS g GROUP BY {names}",
        names = key_names.join(", "),
        select = select.join(", ")
    );
    let mut rows: Vec<(Vec<i64>, SlaRow)> = scope
        .rows(&sql)
        .await?
        .iter()
        .map(|row| {
            (
                key_of(row, &key_names),
                SlaRow { group_id: int(row, "group_id"), split: scope.split_of(row), counts: SlaCounts::from_row(row) },
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    // Per order: the worst settled state, placed by its last settlement.
    let per_order = format!(
        "(SELECT order_id, u AS urgency, worst, last AS settled_at FROM (SELECT order_id, max(urgency) AS u, max(state) AS worst, \
         max(settled_at) AS last FROM {settled} AS s WHERE {filter} GROUP BY order_id) AS a)"
    );
    let order_keys = scope.split_keys("settled_at");
    let order_names = names(&order_keys);
    let select: Vec<String> = order_keys.iter().map(|k| format!("{} AS {}, ", k.expr, k.name)).collect();
    let group_by = if order_names.is_empty() { String::new() } else { format!(" GROUP BY {}", order_names.join(", ")) };
    let sql = format!(
        "SELECT {names}count(*) AS orders, sum(CASE WHEN worst = 3 THEN 1 ELSE 0 END) AS over FROM (SELECT {select}worst FROM {per_order} AS o) AS w{group_by}",
        names = order_names.iter().map(|n| format!("{n}, ")).collect::<String>(),
        select = select.concat()
    );
    let mut any_over: Vec<(Vec<i64>, AnyOver)> = scope
        .rows(&sql)
        .await?
        .iter()
        .filter(|row| int(row, "orders") > 0)
        .map(|row| {
            let (orders, over) = (int(row, "orders"), int(row, "over"));
            (key_of(row, &order_names), AnyOver { split: scope.split_of(row), orders, over, over_share: share(over, orders) })
        })
        .collect();
    any_over.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(SlaAnswer { rows: rows.into_iter().map(|(_, r)| r).collect(), any_over: any_over.into_iter().map(|(_, r)| r).collect() })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entered {
    pub group_id: i64,
    pub orders: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThroughputRow {
    #[serde(flatten)]
    pub split: Split,
    /// Orders whose first status event is in the bucket.
    pub created: i64,
    /// Orders entering each group in the bucket.
    pub entered: Vec<Entered>,
    /// Orders entering a terminal group that is not a cancellation one.
    pub completed: i64,
    /// Orders entering a cancellation group.
    pub cancelled: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThroughputAnswer {
    pub rows: Vec<ThroughputRow>,
}

/// The orders' creation (first entry) and urgency, one row per order.
pub fn orders_relation(scope: &Scope<'_>) -> String {
    format!(
        "(SELECT order_id, c AS created_at, u AS urgency FROM (SELECT order_id, min(entered_at) AS c, max(urgency) AS u FROM {} AS i \
         GROUP BY order_id) AS a)",
        scope.engine.dialect().intervals(scope.project_id)
    )
}

/// `throughput`: per bucket, orders created, entering each group, completed and cancelled.
pub async fn throughput(scope: &Scope<'_>) -> Result<ThroughputAnswer, String> {
    let dialect = scope.engine.dialect();
    let period = scope.period;
    let intervals = dialect.intervals(scope.project_id);
    let split = scope.split_keys("entered_at");
    let split_names = names(&split);
    let mut rows: BTreeMap<Vec<i64>, ThroughputRow> = BTreeMap::new();
    let entry = |rows: &mut BTreeMap<Vec<i64>, ThroughputRow>, row: &Row| -> Vec<i64> {
        let key = key_of(row, &split_names);
        rows.entry(key.clone()).or_insert_with(|| ThroughputRow {
            split: scope.split_of(row),
            created: 0,
            entered: Vec::new(),
            completed: 0,
            cancelled: 0,
        });
        key
    };
    let created_keys = scope.split_keys("created_at");
    let created_filter = format!("{} AND {}", period.span.contains("created_at"), period.urgency.condition());
    for row in scope.rows(&counts(&orders_relation(scope), &created_filter, &created_keys)).await? {
        let key = entry(&mut rows, &row);
        rows.get_mut(&key).expect("just inserted").created = int(&row, "orders");
    }
    let filter = format!("{} AND {}", period.span.contains("entered_at"), period.urgency.condition());
    let mut keys = split.clone();
    keys.push(Key::new("group_id", "group_id"));
    for row in scope.rows(&counts(&intervals, &filter, &keys)).await? {
        let entered = Entered { group_id: int(&row, "group_id"), orders: int(&row, "orders") };
        let key = entry(&mut rows, &row);
        rows.get_mut(&key).expect("just inserted").entered.push(entered);
    }
    let cancellation = scope.cancellation();
    let mut keys = split.clone();
    keys.push(Key::new("cancelled", format!("CASE WHEN {} THEN 1 ELSE 0 END", one_of("group_id", &cancellation, "1 = 0"))));
    let terminal = format!("{filter} AND {}", one_of("group_id", &scope.terminal(), "1 = 0"));
    for row in scope.rows(&counts(&intervals, &terminal, &keys)).await? {
        let orders = int(&row, "orders");
        let key = entry(&mut rows, &row);
        let target = rows.get_mut(&key).expect("just inserted");
        if int(&row, "cancelled") == 1 { target.cancelled = orders } else { target.completed = orders }
    }
    let mut rows: Vec<ThroughputRow> = rows.into_values().collect();
    for row in &mut rows {
        row.entered.sort_by_key(|e| e.group_id);
    }
    Ok(ThroughputAnswer { rows })
}

/// One cancelled order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cancelled {
    pub order_id: i64,
    pub urgency: &'static str,
    /// Its first status event and its first entry into a cancellation group, µs.
    pub created_at: i64,
    pub cancelled_at: i64,
    /// Where it was just before: null when it was cancelled at once.
    pub group_id: Option<i64>,
    pub status_id: Option<i64>,
    /// Spent before the cancellation.
    pub working_seconds: f64,
    pub wall_seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CancelledFrom {
    pub group_id: Option<i64>,
    pub status_id: Option<i64>,
    pub orders: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CancellationRow {
    #[serde(flatten)]
    pub split: Split,
    pub created: i64,
    pub cancelled: i64,
    /// `cancelled / created`; null without created orders.
    pub rate: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CancellationsAnswer {
    /// Per bucket (one row without `bucket=`).
    pub rows: Vec<CancellationRow>,
    /// Where the cancelled orders were just before, most first.
    pub from: Vec<CancelledFrom>,
    /// Time spent before cancelling, per cancelled order.
    pub working_seconds: Stat,
    pub wall_seconds: Stat,
    /// The cancelled orders, by cancellation.
    pub orders: Vec<Cancelled>,
}

/// Orders that entered one of some groups (a cancellation or a completion group): their first
/// entry into one ends them. With the period by creation, those created in it (ended at any
/// time since); by entry, those ended in it.
struct Ends {
    /// `order_id, ended_at`: each order's first entry into one of the groups.
    first_entry: String,
    /// `order_id, created_at, ended_at, urgency`, one row per ended order.
    relation: String,
    /// The relation's rows in the period and of its urgency.
    in_period: String,
    /// The column that places an ended order in the period.
    time: &'static str,
}

impl Ends {
    fn new(scope: &Scope<'_>, groups: &[i64]) -> Ends {
        let dialect = scope.engine.dialect();
        let period = scope.period;
        let first_entry = format!(
            "(SELECT order_id, min(entered_at) AS ended_at FROM {} AS k WHERE {} GROUP BY order_id)",
            dialect.intervals(scope.project_id),
            one_of("group_id", groups, "1 = 0")
        );
        let time = match period.by {
            By::Created => "created_at",
            By::Entered => "ended_at",
        };
        let relation = format!(
            "(SELECT order_id, created_at, ended_at, urgency FROM {orders} AS o {join} {first_entry} AS c USING (order_id))",
            orders = orders_relation(scope),
            join = dialect.inner_join(),
        );
        let in_period = format!("{} AND {}", period.span.contains(time), period.urgency.condition());
        Ends { first_entry, relation, in_period, time }
    }
}

/// One order that ended (see [`Ends`]) in the period.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub order_id: i64,
    /// 0 pending, 1 normal, 2 urgent.
    pub urgency: i64,
    /// Its first status event and its first entry into one of the groups, µs.
    pub created_at: i64,
    pub ended_at: i64,
    /// The group and status it was in just before: its latest visit that began before the end
    /// (`None` when it ended at once).
    pub group_id: Option<i64>,
    pub status_id: Option<i64>,
    /// Spent before the end, in whole microseconds: the intervals that began before it.
    pub working_us: i64,
    pub wall_us: i64,
    /// The worst state (0 none … 3 over) of a non-terminal interval that began before the end.
    pub worst: i64,
}

async fn ended(scope: &Scope<'_>, ends: &Ends) -> Result<Vec<Ended>, String> {
    let dialect = scope.engine.dialect();
    let intervals = dialect.intervals(scope.project_id);
    let list = format!("SELECT order_id, created_at, ended_at, urgency FROM {} AS l WHERE {}", ends.relation, ends.in_period);
    let before = format!(
        "SELECT order_id, {group} AS last_group, {status} AS last_status, sum({working}) AS working_us, sum({wall}) AS wall_us, \
         max(CASE WHEN {terminal} THEN 0 ELSE sla_rank END) AS worst \
         FROM (SELECT order_id, group_id, status_id, entered_at, working_seconds, wall_seconds, sla_rank, ended_at FROM {intervals} AS i \
         {join} {first_entry} AS c USING (order_id)) AS b WHERE entered_at < ended_at GROUP BY order_id",
        group = dialect.arg_max("group_id", "entered_at"),
        status = dialect.arg_max("status_id", "entered_at"),
        working = dialect.int64(&format!("round(working_seconds * {MICROS})")),
        wall = dialect.int64(&format!("round(wall_seconds * {MICROS})")),
        terminal = one_of("group_id", &scope.terminal(), "1 = 0"),
        first_entry = ends.first_entry,
        join = dialect.inner_join(),
    );
    let before: HashMap<i64, Row> = scope.rows(&before).await?.into_iter().map(|row| (int(&row, "order_id"), row)).collect();
    let mut orders: Vec<Ended> = scope
        .rows(&list)
        .await?
        .iter()
        .map(|row| {
            let order_id = int(row, "order_id");
            let prior = before.get(&order_id);
            Ended {
                order_id,
                urgency: int(row, "urgency"),
                created_at: int(row, "created_at"),
                ended_at: int(row, "ended_at"),
                group_id: prior.and_then(|p| opt_int(p, "last_group")),
                status_id: prior.and_then(|p| opt_int(p, "last_status")),
                working_us: prior.map_or(0, |p| int(p, "working_us")),
                wall_us: prior.map_or(0, |p| int(p, "wall_us")),
                worst: prior.map_or(0, |p| int(p, "worst")),
            }
        })
        .collect();
    orders.sort_by_key(|o| (o.ended_at, o.order_id));
    Ok(orders)
}

/// `cancellations`: orders cancelled in the period (by=entered) or created in it and cancelled
/// since (by=created), their rate among orders created in the period, where they were just
/// before, and the time spent before cancelling.
pub async fn cancellations(scope: &Scope<'_>) -> Result<CancellationsAnswer, String> {
    let period = scope.period;
    let cancellation = scope.cancellation();
    let ends = Ends::new(scope, &cancellation);
    let (cancelled_orders, in_period, time) = (&ends.relation, &ends.in_period, ends.time);
    let orders: Vec<Cancelled> = ended(scope, &ends)
        .await?
        .into_iter()
        .map(|o| Cancelled {
            order_id: o.order_id,
            urgency: urgency_name(o.urgency),
            created_at: o.created_at,
            cancelled_at: o.ended_at,
            group_id: o.group_id,
            status_id: o.status_id,
            working_seconds: o.working_us as f64 / MICROS as f64,
            wall_seconds: o.wall_us as f64 / MICROS as f64,
        })
        .collect();

    // Created per bucket, and the cancelled ones placed by `time`.
    let created_keys = scope.split_keys("created_at");
    let created_names = names(&created_keys);
    let created_filter = format!("{} AND {}", period.span.contains("created_at"), period.urgency.condition());
    let mut rows: BTreeMap<Vec<i64>, CancellationRow> = BTreeMap::new();
    for row in scope.rows(&counts(&orders_relation(scope), &created_filter, &created_keys)).await? {
        let created = int(&row, "orders");
        rows.insert(key_of(&row, &created_names), CancellationRow { split: scope.split_of(&row), created, cancelled: 0, rate: None });
    }
    let cancelled_keys = scope.split_keys(time);
    for row in scope.rows(&counts(cancelled_orders, in_period, &cancelled_keys)).await? {
        rows.entry(key_of(&row, &names(&cancelled_keys)))
            .or_insert_with(|| CancellationRow { split: scope.split_of(&row), created: 0, cancelled: 0, rate: None })
            .cancelled = int(&row, "orders");
    }
    let mut rows: Vec<CancellationRow> = rows.into_values().collect();
    for row in &mut rows {
        row.rate = share(row.cancelled, row.created);
    }
    let mut from: BTreeMap<(Option<i64>, Option<i64>), i64> = BTreeMap::new();
    for order in &orders {
        *from.entry((order.group_id, order.status_id)).or_default() += 1;
    }
    let mut from: Vec<CancelledFrom> =
        from.into_iter().map(|((group_id, status_id), orders)| CancelledFrom { group_id, status_id, orders }).collect();
    from.sort_by(|a, b| b.orders.cmp(&a.orders).then((a.group_id, a.status_id).cmp(&(b.group_id, b.status_id))));
    Ok(CancellationsAnswer {
        rows,
        from,
        working_seconds: Stat::of(orders.iter().map(|o| o.working_seconds).collect()),
        wall_seconds: Stat::of(orders.iter().map(|o| o.wall_seconds).collect()),
        orders,
    })
}

/// Completed orders (entered a completion group of the settings): with the period by
/// creation, those created in it and completed since; by entry, those completed in it. Each
/// with the time spent before completing and the worst state reached before.
pub async fn completions(scope: &Scope<'_>) -> Result<Vec<Ended>, String> {
    ended(scope, &Ends::new(scope, &scope.completion())).await
}

/// One order's time in one non-terminal group (all visits), from [`group_totals`].
#[derive(Clone, Debug, PartialEq)]
pub struct GroupTime {
    pub order_id: i64,
    pub group_id: i64,
    /// 0 pending, 1 normal, 2 urgent.
    pub urgency: i64,
    /// 0 none, 1 ok, 2 near, 3 over: the group's final state.
    pub state: i64,
    /// When the last visit ended; `None` while one is open.
    pub settled_at: Option<i64>,
    pub open_visits: i64,
    pub intervals: i64,
    pub working_us: i64,
    pub wall_us: i64,
    /// The order's first status event.
    pub created_at: i64,
}

impl GroupTime {
    fn from_row(row: &Row) -> GroupTime {
        GroupTime {
            order_id: int(row, "order_id"),
            group_id: int(row, "group_id"),
            urgency: int(row, "urgency"),
            state: int(row, "state"),
            settled_at: opt_int(row, "settled_at").filter(|_| int(row, "open_visits") == 0),
            open_visits: int(row, "open_visits"),
            intervals: int(row, "intervals"),
            working_us: int(row, "working_us"),
            wall_us: int(row, "wall_us"),
            created_at: int(row, "created_at"),
        }
    }
}

/// Group times with their order's creation; `filter` is a condition over both.
async fn group_times(scope: &Scope<'_>, filter: &str) -> Result<Vec<GroupTime>, String> {
    let dialect = scope.engine.dialect();
    let sql = format!(
        "SELECT {columns} FROM (SELECT {columns} \
         FROM (SELECT order_id, group_id, state, settled_at, open_visits, intervals, working_us, wall_us FROM {totals} AS t0) AS t \
         {join} {orders} AS o USING (order_id)) AS j WHERE {filter}",
        // The join in a relation of its own: a filter that reads `order_id` again (a subquery)
        // must see one column of that name.
        columns = "order_id, group_id, urgency, state, settled_at, open_visits, intervals, working_us, wall_us, created_at",
        totals = group_totals(dialect, scope.project_id, &scope.terminal()),
        join = dialect.inner_join(),
        orders = orders_relation(scope),
    );
    let mut times: Vec<GroupTime> = scope.rows(&sql).await?.iter().map(GroupTime::from_row).collect();
    times.sort_by_key(|t| (t.order_id, t.group_id));
    Ok(times)
}

/// Orders' times in groups that settled in the period (no visit open, the last one ended in
/// it), as `sla` counts them: of the period's urgency and groups.
pub async fn settled_group_times(scope: &Scope<'_>) -> Result<Vec<GroupTime>, String> {
    group_times(scope, &settled_filter(scope.period)).await
}

/// Every non-terminal group time of the period's orders: by creation, orders created in it; by
/// entry, orders with a visit that began in it. Of the period's urgency and groups.
pub async fn order_group_times(scope: &Scope<'_>) -> Result<Vec<GroupTime>, String> {
    let period = scope.period;
    let orders = match period.by {
        By::Created => period.span.contains("created_at"),
        By::Entered => format!(
            "order_id IN (SELECT order_id FROM {} AS e WHERE {})",
            scope.engine.dialect().intervals(scope.project_id),
            period.span.contains("entered_at")
        ),
    };
    let filter = format!("{orders} AND {} AND {}", period.urgency.condition(), one_of("group_id", &period.groups, "1 = 1"));
    group_times(scope, &filter).await
}
