//! The analytics SQL, written once for both engines. Each engine names only what truly differs
//! between DataFusion and ClickHouse: how a project's deduplicated fact rows are read (the
//! newest version per key), and a handful of functions (a sorted array of a column's values,
//! an array element, integer division, a cast to a 64-bit integer, "the value at the largest
//! key"). Everything else (filters, calendar buckets, quantile ranks, the shape of each query)
//! is built here.
//!
//! Both relations expose the same columns, instants as Int64 microseconds since the epoch:
//! - intervals: `order_id, status_id, group_id, entered_at, left_at (NULL while open),
//!   wall_seconds, working_seconds, urgency (0 pending, 1 normal, 2 urgent), sla_rank (0 none,
//!   1 ok, 2 near, 3 over), created_at (the order's first entry into a status), visit_at (the
//!   entry into the group visit the interval belongs to)`;
//! - cycles: `order_id, cycle_id, started_at, ended_at (NULL while open), wall_seconds,
//!   working_seconds, urgency, created_at`.
//!
//! The processor writes `created_at` and `visit_at` on every row, so placing an order in a
//! period or an interval in its visit needs no join of a table with itself.

use std::fmt::Write;

/// What differs between the two engines' SQL.
pub trait Dialect: Send + Sync {
    /// The project's intervals, newest version per key, as a parenthesized relation.
    fn intervals(&self, project_id: i64) -> String;
    /// The project's cycles, newest version per key.
    fn cycles(&self, project_id: i64) -> String;
    /// An aggregate: the values of `expr` in the group that are not NULL, sorted ascending, as
    /// an array.
    fn sorted(&self, expr: &str) -> String;
    /// The 1-based `index`-th element of `array`.
    fn element(&self, array: &str, index: &str) -> String;
    /// Integer division of two integers.
    fn int_div(&self, a: &str, b: &str) -> String;
    /// `expr` as a signed 64-bit integer.
    fn int64(&self, expr: &str) -> String;
    /// An aggregate: `value` of the row with the largest `by`.
    fn arg_max(&self, value: &str, by: &str) -> String;
    /// The keyword(s) of an inner join that keeps every matching pair.
    fn inner_join(&self) -> &'static str;
}

/// The quantiles every statistic carries, in percent.
pub const QUANTILES: [u32; 3] = [50, 90, 95];

/// Microseconds per second: sums are taken in whole microseconds, so both engines add the
/// same integers in whatever order and agree to the last digit.
pub const MICROS: i64 = 1_000_000;

/// A half-open range of instants, `[from, to)`, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub from: i64,
    pub to: i64,
}

impl Span {
    pub fn contains(&self, column: &str) -> String {
        format!("{column} >= {} AND {column} < {}", self.from, self.to)
    }
}

/// `CASE` mapping an instant to the index of the bucket it falls in; `edges` are the buckets'
/// starts, ascending. Instants before the first edge get 0 (callers filter to the period).
/// The conditions nest as a binary search: a row meets about log2(buckets) comparisons, not
/// one per bucket (a year of weeks is 53).
pub fn bucket_expr(column: &str, edges: &[i64]) -> String {
    if edges.len() <= 1 {
        return "0".to_owned();
    }
    let mut sql = String::new();
    search(&mut sql, column, edges, 0, edges.len() - 1);
    sql
}

/// Writes the index in `lo..=hi` of the last edge at or before `column` (edge `lo` taken as
/// passed).
fn search(sql: &mut String, column: &str, edges: &[i64], lo: usize, hi: usize) {
    if lo == hi {
        let _ = write!(sql, "{lo}");
        return;
    }
    let middle = (lo + hi).div_ceil(2);
    let _ = write!(sql, "CASE WHEN {column} < {} THEN ", edges[middle]);
    search(sql, column, edges, lo, middle - 1);
    sql.push_str(" ELSE ");
    search(sql, column, edges, middle, hi);
    sql.push_str(" END");
}

/// `column IN (a, b, …)`, or `fallback` when there are no values.
pub fn one_of(column: &str, values: &[i64], fallback: &str) -> String {
    if values.is_empty() {
        return fallback.to_owned();
    }
    let list: Vec<String> = values.iter().map(i64::to_string).collect();
    format!("{column} IN ({})", list.join(", "))
}

/// One grouping key: its output name and its expression over the inner rows.
#[derive(Clone, Debug)]
pub struct Key {
    pub name: &'static str,
    pub expr: String,
}

impl Key {
    pub fn new(name: &'static str, expr: impl Into<String>) -> Self {
        Key { name, expr: expr.into() }
    }
}

/// A statistics query: per key, the count of measured rows, of distinct orders among them, of
/// the other rows (open ones, counted but not measured), and for each value column its sum (in
/// microseconds), maximum and quantiles over the measured rows. `rows` is a relation with
/// `order_id` and the value columns; `filter` a condition over it; `measured` the condition
/// that makes a row measured. One pass counts both kinds.
pub struct Stats<'a> {
    pub rows: String,
    pub filter: String,
    pub measured: &'a str,
    pub keys: Vec<Key>,
    /// Output prefix and expression (in seconds) of each measured value.
    pub values: &'a [(&'static str, &'static str)],
}

impl Stats<'_> {
    /// Output columns: each key, `n` (measured rows), `open_rows` (the others), `orders`, and per
    /// value `{p}_sum_us`, `{p}_max`, `{p}_q50`, `{p}_q90`, `{p}_q95`.
    pub fn sql(&self, dialect: &dyn Dialect) -> String {
        let key_select: Vec<String> = self.keys.iter().map(|k| format!("{} AS {}", k.expr, k.name)).collect();
        let key_names: Vec<&str> = self.keys.iter().map(|k| k.name).collect();
        // Unmeasured rows carry NULL values, which every aggregate below skips.
        let measured = self.measured;
        let values: Vec<String> =
            self.values.iter().map(|(name, expr)| format!("CASE WHEN {measured} THEN {expr} ELSE NULL END AS v_{name}")).collect();
        let mut inner = format!(
            "SELECT {}CASE WHEN {measured} THEN order_id ELSE NULL END AS m_order, {} FROM {} WHERE {}",
            prefixed(&key_select),
            values.join(", "),
            self.rows,
            self.filter
        );
        // `m_order` is set exactly on measured rows.
        let mut aggregates = vec![
            "count(m_order) AS n".to_owned(),
            "count(*) - count(m_order) AS open_rows".to_owned(),
            "count(DISTINCT m_order) AS orders".to_owned(),
        ];
        for (name, _) in self.values {
            aggregates.push(format!("sum({}) AS {name}_sum_us", dialect.int64(&format!("round(v_{name} * {MICROS})"))));
            aggregates.push(format!("max(v_{name}) AS {name}_max"));
            aggregates.push(format!("{} AS {name}_sorted", dialect.sorted(&format!("v_{name}"))));
        }
        inner = format!("SELECT {}{} FROM ({inner}) AS facts{}", prefixed_names(&key_names), aggregates.join(", "), group_by(&key_names));
        let mut outer = vec!["n".to_owned(), "open_rows".to_owned(), "orders".to_owned()];
        for (name, _) in self.values {
            outer.push(format!("{name}_sum_us"));
            outer.push(format!("{name}_max"));
            for q in QUANTILES {
                let rank = dialect.int_div(&format!("n * {q} + 99"), "100");
                outer.push(format!("{} AS {name}_q{q}", dialect.element(&format!("{name}_sorted"), &rank)));
            }
        }
        format!("SELECT {}{} FROM ({inner}) AS grouped", prefixed_names(&key_names), outer.join(", "))
    }
}

/// A counting query: per key, rows and distinct orders of `rows` under `filter`.
pub fn counts(rows: &str, filter: &str, keys: &[Key]) -> String {
    let key_select: Vec<String> = keys.iter().map(|k| format!("{} AS {}", k.expr, k.name)).collect();
    let key_names: Vec<&str> = keys.iter().map(|k| k.name).collect();
    format!(
        "SELECT {}count(*) AS n, count(DISTINCT order_id) AS orders FROM (SELECT {}order_id FROM {rows} WHERE {filter}) AS facts{}",
        prefixed_names(&key_names),
        prefixed(&key_select),
        group_by(&key_names)
    )
}

/// The project's visits to groups: an order's consecutive intervals in one group are one visit
/// (moving between statuses of a group continues the visit, `docs/domain.md`), and each
/// interval carries the entry into its visit (`visit_at`). A visit is open (`left_at` NULL)
/// while one of its intervals is; its times are its intervals' sums, added in whole
/// microseconds so both engines get the same sums in any order; `entered_at` is its start.
/// Columns: `order_id, group_id, entered_at, left_at, wall_seconds, working_seconds, urgency,
/// sla_rank, created_at`. No name is reused as an alias, as ClickHouse resolves aliases across
/// the whole query.
pub fn group_visits(dialect: &dyn Dialect, project_id: i64) -> String {
    format!(
        "(SELECT order_id, group_id, visit_at AS entered_at, \
         CASE WHEN count(i_left) < count(*) THEN NULL ELSE max(i_left) END AS left_at, \
         sum({wall}) / {MICROS}.0 AS wall_seconds, sum({working}) / {MICROS}.0 AS working_seconds, \
         max(i_urgency) AS urgency, max(i_sla) AS sla_rank, min(i_created) AS created_at \
         FROM (SELECT order_id, group_id, visit_at, left_at AS i_left, wall_seconds AS i_wall, working_seconds AS i_working, \
         urgency AS i_urgency, sla_rank AS i_sla, created_at AS i_created FROM {intervals} AS i) AS placed \
         GROUP BY order_id, group_id, visit_at)",
        intervals = dialect.intervals(project_id),
        wall = dialect.int64(&format!("round(i_wall * {MICROS})")),
        working = dialect.int64(&format!("round(i_working * {MICROS})")),
    )
}

/// Per order and non-terminal group: the order's `urgency`, the group's final `state` (the worst
/// `sla_rank` of its intervals, each as of the order's latest event), when its last visit ended
/// (`settled_at`), how many of its intervals are still open (`open_visits`), how many there are
/// (`intervals`), and their working and wall time summed in whole microseconds (`working_us`,
/// `wall_us`). Aggregates never take the name of a column they read: ClickHouse would
/// substitute it.
pub fn group_totals(dialect: &dyn Dialect, project_id: i64, terminal: &[i64]) -> String {
    format!(
        "(SELECT order_id, group_id, u AS urgency, st AS state, sa AS settled_at, ov AS open_visits, nv AS intervals, \
         wk AS working_us, wl AS wall_us FROM (SELECT order_id, group_id, max(urgency) AS u, max(sla_rank) AS st, max(left_at) AS sa, \
         sum(CASE WHEN left_at IS NULL THEN 1 ELSE 0 END) AS ov, count(*) AS nv, sum({working}) AS wk, sum({wall}) AS wl \
         FROM {intervals} AS i WHERE NOT ({terminal}) GROUP BY order_id, group_id) AS a)",
        working = dialect.int64(&format!("round(working_seconds * {MICROS})")),
        wall = dialect.int64(&format!("round(wall_seconds * {MICROS})")),
        intervals = dialect.intervals(project_id),
        terminal = one_of("group_id", terminal, "1 = 0"),
    )
}

fn prefixed(items: &[String]) -> String {
    items.iter().map(|item| format!("{item}, ")).collect()
}

fn prefixed_names(items: &[&str]) -> String {
    items.iter().map(|item| format!("{item}, ")).collect()
}

fn group_by(names: &[&str]) -> String {
    if names.is_empty() { String::new() } else { format!(" GROUP BY {}", names.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_a_chain_of_upper_edges() {
        assert_eq!(bucket_expr("t", &[0]), "0");
        assert_eq!(bucket_expr("t", &[0, 10]), "CASE WHEN t < 10 THEN 0 ELSE 1 END");
        assert_eq!(bucket_expr("t", &[0, 10, 20]), "CASE WHEN t < 10 THEN 0 ELSE CASE WHEN t < 20 THEN 1 ELSE 2 END END");
    }

    #[test]
    fn the_search_finds_every_bucket() {
        // Evaluates the nested CASE by hand for every position around every edge.
        fn eval(sql: &str, t: i64) -> i64 {
            let sql = sql.trim();
            let Some(rest) = sql.strip_prefix("CASE WHEN t < ") else { return sql.parse().expect("an index") };
            let (edge, rest) = rest.split_once(" THEN ").expect("THEN");
            let body = rest.strip_suffix(" END").expect("END");
            // Split at the ELSE that belongs to this CASE (depth 0).
            let (mut depth, mut at) = (0, None);
            for (i, _) in body.char_indices() {
                if body[i..].starts_with("CASE ") {
                    depth += 1;
                } else if body[i..].starts_with(" END") {
                    depth -= 1;
                } else if depth == 0 && body[i..].starts_with(" ELSE ") {
                    at = Some(i);
                    break;
                }
            }
            let at = at.expect("ELSE");
            let (then, other) = (&body[..at], &body[at + 6..]);
            if t < edge.parse::<i64>().expect("edge") { eval(then, t) } else { eval(other, t) }
        }
        for count in 2..60 {
            let edges: Vec<i64> = (0..count).map(|i| i * 10).collect();
            let sql = bucket_expr("t", &edges);
            for (index, edge) in edges.iter().enumerate() {
                assert_eq!(eval(&sql, *edge), index as i64, "{count} buckets, at edge {index}");
                assert_eq!(eval(&sql, edge + 9), index as i64, "{count} buckets, inside bucket {index}");
            }
        }
    }

    #[test]
    fn an_empty_list_falls_back() {
        assert_eq!(one_of("g", &[], "1 = 0"), "1 = 0");
        assert_eq!(one_of("g", &[4, 5], "1 = 0"), "g IN (4, 5)");
    }
}
