//! The orders list's parameters, read once for the list, the KPIs and the CSV: filters, sort,
//! paging. Every bad value is a 400 naming its parameter.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use ksa_domain::start_of_day;
use ksa_schemas::Timestamp;
use ksa_schemas::row::RowSla;

use super::index::Version;
use crate::error::ApiError;
use crate::routes::Request;

/// Half-open instant bounds `[from, to)` in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Range {
    pub fn contains(&self, at: i64) -> bool {
        self.from.is_none_or(|f| at >= f) && self.to.is_none_or(|t| at < t)
    }
}

/// Which orders count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filters {
    pub created: Range,
    pub changed: Range,
    /// Order ids that start with these digits.
    pub q: Option<IdPrefix>,
    pub groups: Option<Vec<u16>>,
    pub statuses: Option<Vec<i64>>,
    /// 0 pending, 1 normal, 2 urgent.
    pub urgency: Option<u8>,
    pub sla: Option<RowSla>,
    pub overdue: bool,
    pub open: Option<bool>,
    pub cycle: Option<u32>,
    /// With `cycle`: `Some(true)` open at `as_of`, `Some(false)` done.
    pub cycle_open: Option<bool>,
}

/// What a list is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Working,
    Wall,
    Created,
    Changed,
    Id,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Sort {
    pub fn name(self) -> String {
        let key = match self.key {
            SortKey::Working => "working",
            SortKey::Wall => "wall",
            SortKey::Created => "created",
            SortKey::Changed => "changed",
            SortKey::Id => "id",
        };
        if self.descending { format!("-{key}") } else { key.to_owned() }
    }
}

/// Where a page ends: the sort value and order id of its last row, at the listing's `as_of`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub value: i64,
    pub order_id: i64,
}

fn list<T>(request: &Request, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<Vec<T>>, ApiError> {
    let Some(text) = request.param(name) else { return Ok(None) };
    let mut values = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        values.push(parse(part).ok_or_else(|| ApiError::bad(name, format!("{part:?} is not a valid {name}")))?);
    }
    if values.is_empty() {
        return Err(ApiError::bad(name, "give at least one value"));
    }
    Ok(Some(values))
}

/// `name` as an instant with offset, or a bare date in the project's time zone: a `_from` date
/// is its first instant, a `_to` date the first instant of the next day (a bare `to` date
/// includes that day).
pub fn bound(request: &Request, name: &str, tz: Tz, upper: bool) -> Result<Option<i64>, ApiError> {
    let Some(text) = request.param(name) else { return Ok(None) };
    if let Some(at) = Timestamp::parse(text) {
        return Ok(Some(at.as_micros()));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| ApiError::bad(name, format!("{text:?} is not a date (YYYY-MM-DD) or an instant with its offset")))?;
    let date = if upper { date.succ_opt().ok_or_else(|| ApiError::bad(name, "the date is out of range"))? } else { date };
    Ok(Some(start_of_day(tz, date).as_micros()))
}

fn range(request: &Request, prefix: &str, tz: Tz) -> Result<Range, ApiError> {
    let from = bound(request, &format!("{prefix}_from"), tz, false)?;
    let to = bound(request, &format!("{prefix}_to"), tz, true)?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(ApiError::bad(format!("{prefix}_to"), format!("{prefix}_to must come after {prefix}_from")));
    }
    Ok(Range { from, to })
}

fn flag(request: &Request, name: &str) -> Result<Option<bool>, ApiError> {
    match request.param(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad(name, format!("{other:?} is not true or false"))),
    }
}

impl Filters {
    /// The filters of a request, for a project in `tz` whose known groups are `groups`.
    pub fn parse(request: &Request, tz: Tz, groups: &[u16]) -> Result<Filters, ApiError> {
        let q = match request.param("q") {
            Some(text) => {
                let digits = text.trim().trim_start_matches('#');
                if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ApiError::bad("q", "search by an order number or its first digits"));
                }
                Some(IdPrefix {
                    value: digits.parse().map_err(|_| ApiError::bad("q", "the number is too long"))?,
                    digits: digits.len() as u32,
                })
            }
            None => None,
        };
        let group_ids = list(request, "group", |g| g.parse::<u16>().ok().filter(|g| groups.contains(g)))?;
        let urgency = match request.param("urgency") {
            None => None,
            Some("pending") => Some(0),
            Some("normal") => Some(1),
            Some("urgent") => Some(2),
            Some(other) => return Err(ApiError::bad("urgency", format!("{other:?} is not urgent, normal or pending"))),
        };
        let sla = match request.param("sla") {
            None => None,
            Some(text) => Some(RowSla::parse(text).ok_or_else(|| ApiError::bad("sla", format!("{text:?} is not ok, near, over or none")))?),
        };
        let cycle = match request.param("cycle") {
            None => None,
            Some(text) => Some(text.parse::<u32>().map_err(|_| ApiError::bad("cycle", format!("{text:?} is not a cycle id")))?),
        };
        let cycle_open = match request.param("cycle_state") {
            None => None,
            Some(_) if cycle.is_none() => return Err(ApiError::bad("cycle_state", "goes with cycle=ID")),
            Some("open") => Some(true),
            Some("done") => Some(false),
            Some(other) => return Err(ApiError::bad("cycle_state", format!("{other:?} is not open or done"))),
        };
        Ok(Filters {
            created: range(request, "created", tz)?,
            changed: range(request, "changed", tz)?,
            q,
            groups: group_ids,
            statuses: list(request, "status", |s| s.parse::<i64>().ok().filter(|s| *s > 0))?,
            urgency,
            sla,
            overdue: flag(request, "overdue")?.unwrap_or(false),
            open: flag(request, "open")?,
            cycle,
            cycle_open,
        })
    }

    /// The filters as text, to recognise a cursor made for other filters.
    pub fn fingerprint(&self) -> String {
        format!("{self:?}")
    }
}

/// The first digits of order ids (`q=231`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdPrefix {
    pub value: u64,
    /// How many digits were given, leading zeros included (which no id has).
    pub digits: u32,
}

impl IdPrefix {
    /// True when the decimal digits of `id` start with these: `id` lies in
    /// `[value·10ᵏ, (value + 1)·10ᵏ)` for `k` its digits beyond the prefix's (a multiplication,
    /// as a walk over a million ids tests each).
    pub fn matches(self, id: i64) -> bool {
        const POW10: [u64; 20] = {
            let mut table = [1u64; 20];
            let mut i = 1;
            while i < 20 {
                table[i] = table[i - 1] * 10;
                i += 1;
            }
            table
        };
        let Ok(id) = u64::try_from(id) else { return false };
        let digits = id.checked_ilog10().map_or(1, |l| l + 1);
        let Some(beyond) = digits.checked_sub(self.digits) else { return false };
        let scale = POW10[beyond as usize];
        self.value.checked_mul(scale).is_some_and(|low| id >= low && id - low < scale)
    }
}

/// The sort of a request (`-changed` when absent).
pub fn sort(request: &Request) -> Result<Sort, ApiError> {
    let text = request.param("sort").unwrap_or("-changed");
    let (descending, key) = match text.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, text),
    };
    let key = match key {
        "working" => SortKey::Working,
        "wall" => SortKey::Wall,
        "created" => SortKey::Created,
        "changed" => SortKey::Changed,
        "id" => SortKey::Id,
        _ => return Err(ApiError::bad("sort", format!("{text:?}: sort by working, wall, created, changed or id (with - for descending)"))),
    };
    Ok(Sort { key, descending })
}

/// A cursor: the listing's `as_of`, its sort and filters, and where the page ended.
pub struct Cursor {
    pub as_of: Timestamp,
    /// The orders index's version at the first page.
    pub version: Version,
    pub position: Position,
}

/// `cursor` made for this listing (same sort and filters); 400 for anything else.
pub fn cursor(request: &Request, project_id: i64, sort: Sort, filters: &Filters) -> Result<Option<Cursor>, ApiError> {
    let Some(text) = request.param("cursor") else { return Ok(None) };
    let foreign = || ApiError::bad("cursor", "not a cursor of this listing (its filters or sort differ, or it was not made by this API)");
    let decoded = base64url_decode(text).ok_or_else(foreign)?;
    let fields: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&decoded).map_err(|_| foreign())?;
    let field = |name: &str| fields.get(name).ok_or_else(foreign);
    if field("project")?.as_i64() != Some(project_id)
        || field("sort")?.as_str() != Some(&sort.name())
        || field("filters")?.as_str() != Some(&digest(filters))
    {
        return Err(foreign());
    }
    let as_of = field("as_of")?.as_i64().map(Timestamp::from_micros).ok_or_else(foreign)?;
    let value = field("value")?.as_i64().ok_or_else(foreign)?;
    let order_id = field("order_id")?.as_i64().ok_or_else(foreign)?;
    let generation = field("generation")?.as_str().and_then(|g| u64::from_str_radix(g, 16).ok()).ok_or_else(foreign)?;
    let changes = field("changes")?.as_u64().ok_or_else(foreign)?;
    Ok(Some(Cursor { as_of, version: Version { generation, changes }, position: Position { value, order_id } }))
}

/// The cursor after `position` for this listing.
pub fn make_cursor(project_id: i64, as_of: Timestamp, version: Version, sort: Sort, filters: &Filters, position: Position) -> String {
    let fields = serde_json::json!({
        "project": project_id,
        "generation": format!("{:x}", version.generation),
        "changes": version.changes,
        "as_of": as_of.as_micros(),
        "sort": sort.name(),
        "filters": digest(filters),
        "value": position.value,
        "order_id": position.order_id,
    });
    base64url_encode(fields.to_string().as_bytes())
}

fn digest(filters: &Filters) -> String {
    ksa_state::secret::sha256_hex(&filters.fingerprint())[..16].to_owned()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub(crate) fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8) | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

pub(crate) fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let values: Vec<u32> = text.bytes().map(|b| ALPHABET.iter().position(|a| *a == b).map(|p| p as u32)).collect::<Option<_>>()?;
    let mut out = Vec::with_capacity(values.len() * 3 / 4);
    for chunk in values.chunks(4) {
        if chunk.len() < 2 {
            return None;
        }
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, v)| n | (v << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length() {
        for text in ["", "a", "ab", "abc", "abcd", "{\"as_of\":1}"] {
            assert_eq!(base64url_decode(&base64url_encode(text.as_bytes())).unwrap(), text.as_bytes());
        }
        assert!(base64url_decode("a").is_none());
        assert!(base64url_decode("!!!!").is_none());
    }

    #[test]
    fn ids_match_by_their_first_digits() {
        let prefix = |text: &str| IdPrefix { value: text.parse().unwrap(), digits: text.len() as u32 };
        assert!(prefix("231").matches(23196));
        assert!(prefix("23196").matches(23196));
        assert!(!prefix("2319607").matches(23196));
        assert!(!prefix("23").matches(123));
        assert!(!prefix("07").matches(7) && !prefix("07").matches(71));
        assert!(prefix("9").matches(9) && prefix("1").matches(10));
        assert!(!prefix("5").matches(-5) && prefix("9223372036854775807").matches(i64::MAX));
        let ids = [0i64, 1, 5, 9, 10, 49, 50, 59, 60, 499, 500, 599, 5_000, 50_999, 51_000, 599_999, 600_000, 1_000_000, i64::MAX];
        for text in ["0", "5", "50", "59", "05", "500", "5999", "6", "1000000", "92233720368547758"] {
            for id in ids {
                assert_eq!(prefix(text).matches(id), id.to_string().starts_with(text), "{text} against {id}");
            }
        }
    }
}
