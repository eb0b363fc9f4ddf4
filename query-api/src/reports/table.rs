//! The table every report answers, written once: typed cells under named columns, sorted by
//! any column (nulls last, the row's key breaking ties), paged by keyset with an opaque cursor,
//! and written as JSON rows or as CSV.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::analytics::local_time;
use crate::error::ApiError;
use crate::orders::csv::field;
use crate::orders::params::{base64url_decode, base64url_encode};

/// One value of a row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    /// Microseconds since the epoch; shown in the project's time zone.
    Instant(i64),
    /// An SLA state by rank: 0 none, 1 ok, 2 near, 3 over.
    Sla(i64),
}

/// The word of an SLA rank.
pub fn sla_word(rank: i64) -> &'static str {
    match rank {
        3 => "over",
        2 => "near",
        1 => "ok",
        _ => "none",
    }
}

impl Cell {
    /// A float, or null when there is none.
    pub fn float(value: Option<f64>) -> Cell {
        value.map_or(Cell::Null, Cell::Float)
    }

    /// Whole microseconds as seconds.
    pub fn seconds(micros: i64) -> Cell {
        Cell::Float(micros as f64 / 1e6)
    }

    /// The value in a JSON answer: instants as RFC 3339 in `tz`, SLA states as words.
    pub fn json(&self, tz: Tz) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(n) => json!(n),
            Cell::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
            Cell::Bool(b) => json!(b),
            Cell::Text(text) => json!(text),
            Cell::Instant(at) => json!(local_time(tz, *at)),
            Cell::Sla(rank) => json!(sla_word(*rank)),
        }
    }

    /// The value in a CSV field (empty for null).
    pub fn text(&self, tz: Tz) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Int(n) => n.to_string(),
            Cell::Float(x) => x.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Text(text) => text.clone(),
            Cell::Instant(at) => local_time(tz, *at),
            Cell::Sla(rank) => sla_word(*rank).to_owned(),
        }
    }

    fn kind_rank(&self) -> u8 {
        match self {
            Cell::Null => 0,
            Cell::Int(_) | Cell::Float(_) => 1,
            Cell::Bool(_) => 2,
            Cell::Text(_) => 3,
            Cell::Instant(_) => 4,
            Cell::Sla(_) => 5,
        }
    }

    /// The order of two values of one column (never null).
    fn compare(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Int(a), Cell::Int(b)) | (Cell::Instant(a), Cell::Instant(b)) | (Cell::Sla(a), Cell::Sla(b)) => a.cmp(b),
            (Cell::Float(a), Cell::Float(b)) => a.total_cmp(b),
            (Cell::Int(a), Cell::Float(b)) => (*a as f64).total_cmp(b),
            (Cell::Float(a), Cell::Int(b)) => a.total_cmp(&(*b as f64)),
            (Cell::Bool(a), Cell::Bool(b)) => a.cmp(b),
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
            (a, b) => a.kind_rank().cmp(&b.kind_rank()),
        }
    }
}

/// What a column holds, as the answer's `columns` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    /// Seconds and other decimals.
    Float,
    Bool,
    Text,
    Instant,
    Sla,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Int => "integer",
            Kind::Float => "number",
            Kind::Bool => "boolean",
            Kind::Text => "string",
            Kind::Instant => "instant",
            Kind::Sla => "sla",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

impl Column {
    pub fn new(name: impl Into<String>, kind: Kind) -> Column {
        Column { name: name.into(), kind }
    }
}

/// One row: its key (what it is about: an order, a group, an order and a group), unique in
/// the table, and a cell per column.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub key: Vec<i64>,
    pub cells: Vec<Cell>,
}

/// A report's rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

/// What a table is sorted by: a column, ascending or descending (`sort=col`, `sort=-col`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortBy {
    pub column: usize,
    pub name: String,
    pub descending: bool,
}

impl SortBy {
    /// `text` (else `default`) over `columns`; 400 naming `sort` and listing the columns when
    /// it names none of them.
    pub fn parse(text: Option<&str>, default: &str, columns: &[Column]) -> Result<SortBy, ApiError> {
        let text = text.unwrap_or(default);
        let (descending, name) = match text.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, text),
        };
        let column = columns.iter().position(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            ApiError::bad("sort", format!("{text:?} is not a column; sort by one of {} (with - for descending)", names.join(", ")))
        })?;
        Ok(SortBy { column, name: name.to_owned(), descending })
    }

    /// As the parameter spells it.
    pub fn text(&self) -> String {
        if self.descending { format!("-{}", self.name) } else { self.name.clone() }
    }

    /// The order of two (value, key) pairs: nulls last whatever the direction, then by value,
    /// then by key ascending.
    fn order(&self, a: (&Cell, &[i64]), b: (&Cell, &[i64])) -> Ordering {
        let by_value = match (a.0, b.0) {
            (Cell::Null, Cell::Null) => Ordering::Equal,
            (Cell::Null, _) => Ordering::Greater,
            (_, Cell::Null) => Ordering::Less,
            (x, y) if self.descending => y.compare(x),
            (x, y) => x.compare(y),
        };
        by_value.then_with(|| a.1.cmp(b.1))
    }

    fn of<'a>(&self, row: &'a Row) -> (&'a Cell, &'a [i64]) {
        (row.cells.get(self.column).unwrap_or(&Cell::Null), &row.key)
    }

    /// Where a page ended: after `row`.
    pub fn position(&self, row: &Row) -> Position {
        let (value, key) = self.of(row);
        Position { value: value.clone(), key: key.to_vec() }
    }
}

/// The sort value and key of the last row of a page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub value: Cell,
    pub key: Vec<i64>,
}

impl Table {
    pub fn new(columns: Vec<Column>) -> Table {
        Table { columns, rows: Vec::new() }
    }

    pub fn push(&mut self, key: Vec<i64>, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "a row has a cell per column");
        self.rows.push(Row { key, cells });
    }

    pub fn sort(&mut self, sort: &SortBy) {
        self.rows.sort_by(|a, b| sort.order(sort.of(a), sort.of(b)));
    }

    /// Of the sorted rows, the first `limit` after `after`, and whether more follow.
    pub fn page(&self, sort: &SortBy, after: Option<&Position>, limit: usize) -> (&[Row], bool) {
        let start = after.map_or(0, |p| self.rows.partition_point(|row| sort.order(sort.of(row), (&p.value, &p.key)) != Ordering::Greater));
        let end = start.saturating_add(limit).min(self.rows.len());
        (&self.rows[start..end], end < self.rows.len())
    }

    /// `[{name, type}]`.
    pub fn columns_json(&self) -> Value {
        Value::Array(self.columns.iter().map(|c| json!({"name": c.name, "type": c.kind.name()})).collect())
    }

    /// Rows as JSON objects, column name to value.
    pub fn rows_json(&self, rows: &[Row], tz: Tz) -> Value {
        Value::Array(
            rows.iter()
                .map(|row| Value::Object(self.columns.iter().zip(&row.cells).map(|(c, cell)| (c.name.clone(), cell.json(tz))).collect()))
                .collect(),
        )
    }

    /// Every row as CSV, in the table's order, with a header of the column names.
    pub fn csv(&self, tz: Tz) -> String {
        let mut out = String::new();
        let mut line = String::new();
        for column in &self.columns {
            field(&mut line, &column.name);
        }
        let _ = writeln!(out, "{}", line.get(1..).unwrap_or_default());
        for row in &self.rows {
            line.clear();
            for cell in &row.cells {
                field(&mut line, &cell.text(tz));
            }
            let _ = writeln!(out, "{}", line.get(1..).unwrap_or_default());
        }
        out
    }
}

/// The parameters a cursor belongs to: the report, the project, and every query parameter but
/// `cursor`, `limit` and `format` (a page may be of another size, or the file of the same rows).
pub fn fingerprint(report: &str, project_id: i64, query: &HashMap<String, String>) -> String {
    let params: BTreeMap<&str, &str> = query
        .iter()
        .filter(|(name, value)| !matches!(name.as_str(), "cursor" | "limit" | "format") && !value.is_empty())
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let text = serde_json::to_string(&json!({"report": report, "project": project_id, "params": params})).unwrap_or_default();
    ksa_state::secret::sha256_hex(&text)[..32].to_owned()
}

/// Where the next page starts, and what the first page pinned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub fingerprint: String,
    /// The first page's "now" (µs): the default period's end, or the custom report's `as_of`.
    pub now: i64,
    pub after: Position,
    /// The orders index's version at the first page (custom report): generation and changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<(u64, u64)>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        base64url_encode(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }

    /// `text` made for the parameters of `fingerprint`; 400 naming `cursor` otherwise.
    pub fn decode(text: &str, fingerprint: &str) -> Result<Cursor, ApiError> {
        let foreign = || ApiError::bad("cursor", "not a cursor of this report (its parameters differ, or it was not made by this API)");
        let bytes = base64url_decode(text).ok_or_else(foreign)?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| foreign())?;
        if cursor.fingerprint != fingerprint {
            return Err(foreign());
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut table = Table::new(vec![Column::new("order_id", Kind::Int), Column::new("working_seconds", Kind::Float)]);
        for (id, working) in [(5, Some(2.0)), (3, None), (1, Some(2.0)), (4, Some(1.5)), (2, None), (6, Some(9.0))] {
            table.push(vec![id], vec![Cell::Int(id), Cell::float(working)]);
        }
        table
    }

    fn ids(rows: &[Row]) -> Vec<i64> {
        rows.iter().map(|r| r.key[0]).collect()
    }

    fn sort(text: &str, table: &Table) -> SortBy {
        SortBy::parse(Some(text), "order_id", &table.columns).unwrap()
    }

    #[test]
    fn nulls_sort_last_either_way_and_the_key_breaks_ties() {
        let mut t = table();
        let by = sort("working_seconds", &t);
        t.sort(&by);
        assert_eq!(ids(&t.rows), [4, 1, 5, 6, 2, 3]);
        let by = sort("-working_seconds", &t);
        t.sort(&by);
        assert_eq!(ids(&t.rows), [6, 1, 5, 4, 2, 3]);
        assert_eq!(by.text(), "-working_seconds");
    }

    #[test]
    fn pages_after_a_position_list_every_row_once() {
        for text in ["working_seconds", "-working_seconds", "order_id", "-order_id"] {
            let mut t = table();
            let by = sort(text, &t);
            t.sort(&by);
            let (mut seen, mut after) = (Vec::new(), None);
            loop {
                let (rows, more) = t.page(&by, after.as_ref(), 4);
                seen.extend(ids(rows));
                // Through the cursor's text, as a client would send it back.
                let cursor = Cursor { fingerprint: "f".into(), now: 7, after: by.position(rows.last().unwrap()), version: None };
                after = Some(Cursor::decode(&cursor.encode(), "f").unwrap().after);
                if !more {
                    break;
                }
            }
            assert_eq!(seen, ids(&t.rows), "{text}");
        }
    }

    #[test]
    fn a_cursor_round_trips_and_is_refused_for_other_parameters() {
        let cursor = Cursor {
            fingerprint: "abc".into(),
            now: 1_700_000_000_000_000,
            after: Position { value: Cell::Float(0.1 + 0.2), key: vec![4, 2] },
            version: Some((u64::MAX, 3)),
        };
        assert_eq!(Cursor::decode(&cursor.encode(), "abc").unwrap(), cursor);
        assert_eq!(Cursor::decode(&cursor.encode(), "abd").unwrap_err().body()["field"], "cursor");
        assert_eq!(Cursor::decode("!!", "abc").unwrap_err().body()["field"], "cursor");
        assert_eq!(Cursor::decode(&base64url_encode(b"{}"), "abc").unwrap_err().body()["field"], "cursor");
    }

    #[test]
    fn the_fingerprint_ignores_paging_and_format_only() {
        let query =
            |pairs: &[(&str, &str)]| -> HashMap<String, String> { pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() };
        let base = fingerprint("sla", 1, &query(&[("from", "2026-03-01"), ("sort", "-worst")]));
        assert_eq!(base, fingerprint("sla", 1, &query(&[("sort", "-worst"), ("from", "2026-03-01"), ("limit", "5"), ("cursor", "x")])));
        assert_ne!(base, fingerprint("sla", 1, &query(&[("from", "2026-03-02"), ("sort", "-worst")])));
        assert_ne!(base, fingerprint("sla", 2, &query(&[("from", "2026-03-01"), ("sort", "-worst")])));
        assert_ne!(base, fingerprint("success", 1, &query(&[("from", "2026-03-01"), ("sort", "-worst")])));
    }

    #[test]
    fn an_unknown_sort_column_names_sort_and_lists_the_columns() {
        let error = SortBy::parse(Some("-speed"), "order_id", &table().columns).unwrap_err();
        let body = error.body();
        assert_eq!(body["field"], "sort");
        assert!(body["message"].as_str().unwrap().contains("order_id, working_seconds"), "{body}");
    }

    #[test]
    fn csv_has_a_header_and_shows_cells_as_words() {
        let tz: Tz = "Europe/Kyiv".parse().unwrap();
        let mut t = Table::new(vec![
            Column::new("at", Kind::Instant),
            Column::new("sla", Kind::Sla),
            Column::new("name", Kind::Text),
            Column::new("n", Kind::Int),
        ]);
        t.push(vec![1], vec![Cell::Instant(1_772_445_600_000_000), Cell::Sla(3), Cell::Text("a, b".into()), Cell::Null]);
        assert_eq!(t.csv(tz), "at,sla,name,n\n2026-03-02T12:00:00+02:00,over,\"a, b\",\n");
        assert_eq!(t.rows_json(&t.rows, tz)[0]["sla"], "over");
    }
}
