//! Every order of a project, in memory, in the few numbers that filters, sorts and KPIs need:
//! lists over a million orders answer in milliseconds without touching the database, and never
//! recompute an order from its events.
//!
//! An entry is the stored row of the order ([`OrderRow`], as of its latest event) cut down to
//! numbers. Measured at a later `as_of`, only the open interval has grown: by the working time
//! of its group's calendar between the latest event and `as_of`, which is `C(as_of) − C(last)`
//! for the calendar's cumulative clock `C`. `C(last)` is kept per entry, `C(as_of)` is computed
//! once per request and calendar, so growing a million orders costs one subtraction each.
//!
//! Lists are sorted without sorting: the index keeps each sort's keys in ordered sets, and a
//! page walks them from the cursor. A time-dependent key (working or wall time) is kept as a
//! base that does not change with time: for an open order, working time at `as_of` is
//! `working − C(last) + C(as_of)`, so within one current group (one calendar) the order of
//! `working − C(last)` is the order at every instant; closed orders keep their totals. A page
//! merges a few such lanes, shifting each by its offset at `as_of`.
//!
//! An index serves one settings revision (the applied one): its calendars and limits. A row of
//! another revision, or a settings change, rebuilds it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::sync::Arc;

use ksa_domain::ProjectRules;
use ksa_schemas::Timestamp;
use ksa_schemas::row::{OrderRow, RowSla, UrgencySource};

use super::params::IdPrefix;

/// No instant: a crossing that will not happen.
pub const NEVER: i64 = i64::MAX;

/// Urgency as a small number: pending 0, normal 1, urgent 2.
pub fn urgency_rank(urgency: &str) -> u8 {
    match urgency {
        "urgent" => 2,
        "normal" => 1,
        _ => 0,
    }
}

/// One group's totals of an order as of its latest event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupTotals {
    pub group_id: u16,
    pub working: i64,
    pub wall: i64,
    pub visits: u32,
    /// The limit on the order's grid, in working seconds.
    pub limit_seconds: Option<i64>,
    pub sla: RowSla,
}

/// One cycle of an order as of its latest event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CycleTotals {
    pub cycle_id: u32,
    pub working: i64,
    pub wall: i64,
    pub open: bool,
}

/// An order in numbers, measured up to `at` (its latest event for a stored row).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub order_id: i64,
    pub status_id: i64,
    pub group_id: u16,
    /// Not in a terminal group: its clock runs after `last`.
    pub open: bool,
    pub urgency: u8,
    /// Why, in a word (`rule`, `items`, `override`, `pending`) and the rule's name or match.
    pub urgency_source: Box<str>,
    pub started_at: i64,
    pub first_event_at: i64,
    /// Its latest event.
    pub last: i64,
    /// The instant its totals are measured up to.
    pub at: i64,
    /// The worst state over groups and statuses at `at`, and the current group's.
    pub sla: RowSla,
    pub group_sla: RowSla,
    /// When the order, and its current group, turn near and over after `at` (or [`NEVER`]).
    pub near_at: i64,
    pub over_at: i64,
    pub group_near_at: i64,
    pub group_over_at: i64,
    /// Tracked working and wall time at `at` (non-terminal groups, all visits).
    pub working: i64,
    pub wall: i64,
    /// The current group's calendar's cumulative working time at `at`, when `at` lies in its
    /// compiled span (growth is then a subtraction).
    pub clock_at: Option<i64>,
    pub groups: Box<[GroupTotals]>,
    pub cycles: Box<[CycleTotals]>,
    pub settings_revision: i64,
    pub event_count: u32,
}

/// What of an entry does not change with time, in a few bytes: a walk over every order of a
/// project tests these, kept side by side, and reads the whole entry only of those that may
/// match (a tenth of a million orders' entries is a fifth of the memory to stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub order_id: i64,
    pub status_id: i64,
    pub started_at: i64,
    /// Its latest event.
    pub last: i64,
    pub group_id: u16,
    pub urgency: u8,
    pub open: bool,
}

impl Key {
    pub fn of(entry: &Entry) -> Key {
        Key {
            order_id: entry.order_id,
            status_id: entry.status_id,
            started_at: entry.started_at,
            last: entry.last,
            group_id: entry.group_id,
            urgency: entry.urgency,
            open: entry.open,
        }
    }

    /// [`Entry::may_match`].
    pub fn may_match(&self, filters: &super::params::Filters) -> bool {
        filters.created.contains(self.started_at)
            && filters.changed.contains(self.last)
            && filters.q.is_none_or(|q| q.matches(self.order_id))
            && filters.groups.as_ref().is_none_or(|g| g.contains(&self.group_id))
            && filters.statuses.as_ref().is_none_or(|s| s.contains(&self.status_id))
            && filters.urgency.is_none_or(|u| u == self.urgency)
            && filters.open.is_none_or(|open| open == self.open)
    }
}

/// Where an order's urgency comes from, as one short text (the CSV's column).
pub fn source_label(source: &UrgencySource) -> String {
    match source {
        UrgencySource::Pending => "pending".into(),
        UrgencySource::Items => "items".into(),
        UrgencySource::Override => "override".into(),
        UrgencySource::Rule { name: Some(name), .. } => format!("rule: {name}"),
        UrgencySource::Rule { match_type, match_value, .. } => format!("rule: {match_type} = {match_value}"),
    }
}

fn instant(at: Option<Timestamp>) -> i64 {
    at.map_or(NEVER, Timestamp::as_micros)
}

impl Entry {
    pub fn from_row(row: &OrderRow, rules: &ProjectRules) -> Entry {
        let c = &row.crossings;
        let earliest = |a: Option<Timestamp>, b: Option<Timestamp>| instant(a).min(instant(b));
        Entry {
            order_id: row.order_id,
            status_id: row.current_status_id,
            group_id: row.current_group_id,
            open: row.open,
            urgency: urgency_rank(&row.urgency),
            urgency_source: source_label(&row.urgency_source).into_boxed_str(),
            started_at: row.started_at.as_micros(),
            first_event_at: row.first_event_at.as_micros(),
            last: row.last_changed_at.as_micros(),
            at: row.as_of.as_micros(),
            sla: row.sla,
            group_sla: row.groups.get(&row.current_group_id).map_or(RowSla::None, |g| g.sla),
            near_at: earliest(c.group_near_at, c.status_near_at),
            over_at: earliest(c.group_over_at, c.status_over_at),
            group_near_at: instant(c.group_near_at),
            group_over_at: instant(c.group_over_at),
            working: row.working_micros,
            wall: row.wall_micros,
            clock_at: row.open.then(|| rules.clock_for_group(row.current_group_id).cumulative(row.as_of)).flatten(),
            groups: row
                .groups
                .iter()
                .map(|(id, g)| GroupTotals {
                    group_id: *id,
                    working: g.working_micros,
                    wall: g.wall_micros,
                    visits: g.visits,
                    limit_seconds: g.limit_seconds,
                    sla: g.sla,
                })
                .collect(),
            cycles: row
                .cycles
                .iter()
                .map(|(id, c)| CycleTotals { cycle_id: *id, working: c.working_micros, wall: c.wall_micros, open: c.open })
                .collect(),
            settings_revision: row.settings_revision,
            event_count: row.event_count,
        }
    }

    /// Whether the order can match `filters` at all, by what does not change with time (a
    /// cheap test before measuring it).
    pub fn may_match(&self, filters: &super::params::Filters) -> bool {
        Key::of(self).may_match(filters)
    }

    /// Whether `other` is this order at the same or a later version (and replaces it).
    pub fn replaced_by(&self, other: &Entry) -> bool {
        (other.settings_revision, other.event_count) >= (self.settings_revision, self.event_count)
    }
}

/// The cumulative working time of each current group's calendar at one instant: what turns an
/// entry's `clock_at_last` into its growth.
pub struct Clocks<'a> {
    rules: &'a ProjectRules,
    as_of: Timestamp,
    /// Per group asked for: a handful, searched along (quicker than hashing, once per order).
    at: Vec<(u16, Option<i64>)>,
}

impl<'a> Clocks<'a> {
    pub fn new(rules: &'a ProjectRules, as_of: Timestamp) -> Self {
        Clocks { rules, as_of, at: Vec::new() }
    }

    /// The group's calendar's cumulative working time at `as_of` (`None` outside its span).
    pub fn at_as_of(&mut self, group_id: u16) -> Option<i64> {
        if let Some((_, at)) = self.at.iter().find(|(group, _)| *group == group_id) {
            return *at;
        }
        let at = self.rules.clock_for_group(group_id).cumulative(self.as_of);
        self.at.push((group_id, at));
        at
    }

    /// The working time of `entry`'s open interval from its `at` to `as_of` (which must not be
    /// before it); zero in a terminal group.
    pub fn growth(&mut self, entry: &Entry) -> i64 {
        if !entry.open || entry.at >= self.as_of.as_micros() {
            return 0;
        }
        match (self.at_as_of(entry.group_id), entry.clock_at) {
            (Some(now), Some(then)) => now - then,
            _ => self.rules.clock_for_group(entry.group_id).working_micros(Timestamp::from_micros(entry.at), self.as_of),
        }
    }

    /// The wall time of `entry`'s open interval from its `at` to `as_of`.
    pub fn wall_growth(&self, entry: &Entry) -> i64 {
        if entry.open { (self.as_of.as_micros() - entry.at).max(0) } else { 0 }
    }

    pub fn as_of(&self) -> Timestamp {
        self.as_of
    }
}

/// Where an entry sits in a time-dependent sort, and its base there (see the module's doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// In a terminal group: its totals no longer change.
    Closed,
    /// Open in this group: the key grows with the group's calendar.
    Group(u16),
    /// Open, for wall time: the key grows with time itself.
    Open,
    /// Open, but its latest event lies outside the span the calendars are compiled for: its
    /// key is computed for each request.
    Irregular,
}

/// The lane and base of `entry` when sorting by working time.
pub fn working_lane(entry: &Entry) -> (Lane, i64) {
    match (entry.open, entry.clock_at) {
        (false, _) => (Lane::Closed, entry.working),
        (true, Some(clock)) => (Lane::Group(entry.group_id), entry.working - clock),
        (true, None) => (Lane::Irregular, entry.working),
    }
}

/// The lane and base of `entry` when sorting by wall time.
pub fn wall_lane(entry: &Entry) -> (Lane, i64) {
    if entry.open { (Lane::Open, entry.wall - entry.at) } else { (Lane::Closed, entry.wall) }
}

/// `(key, order id)` sets, one per lane.
pub type Lanes = BTreeMap<Lane, BTreeSet<(i64, i64)>>;

fn lanes_insert(lanes: &mut Lanes, (lane, base): (Lane, i64), order_id: i64) {
    lanes.entry(lane).or_default().insert((base, order_id));
}

fn lanes_remove(lanes: &mut Lanes, (lane, base): (Lane, i64), order_id: i64) {
    if let Some(set) = lanes.get_mut(&lane) {
        set.remove(&(base, order_id));
    }
}

/// Replaced entries kept so a listing can see the index as it was at its first page.
const HISTORY: usize = 200_000;

/// Where an index stood: its identity and how many changes it had taken. A listing's cursor
/// keeps it, so later pages see the orders as the first page did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    /// Random per index: another process's index, or this one rebuilt, is another.
    pub generation: u64,
    pub changes: u64,
}

/// A number no other index (here or in another process) is likely to have.
fn random_generation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The orders of one project at one settings revision, with every sort's keys.
pub struct ProjectIndex {
    pub project_id: i64,
    /// The applied revision whose rules measure the entries.
    pub revision: i64,
    pub rules: Arc<ProjectRules>,
    version: Version,
    /// `(change, order id, the entry it replaced)`, oldest first: `None` for an order that
    /// change added. At most [`HISTORY`].
    history: std::collections::VecDeque<(u64, i64, Option<Entry>)>,
    entries: Vec<Entry>,
    /// The entries' [`Key`]s, at the same positions.
    keys: Vec<Key>,
    /// Order id → position in `entries`; in id order, it is also the sort by id.
    positions: BTreeMap<i64, usize>,
    pub changed: BTreeSet<(i64, i64)>,
    pub created: BTreeSet<(i64, i64)>,
    /// `changed` and `created` of the orders now in each group: a listing filtered by group
    /// walks only those.
    pub changed_in_group: HashMap<u16, BTreeSet<(i64, i64)>>,
    pub created_in_group: HashMap<u16, BTreeSet<(i64, i64)>>,
    pub working: Lanes,
    pub wall: Lanes,
    /// `(from, order id)` of the open orders whose current group is over its limit from `from`
    /// on (`i64::MIN`: already at their latest event): those overdue at an instant are a range.
    overdue: BTreeSet<(i64, i64)>,
}

/// From when the order is overdue if no event comes (see `Measured::overdue`): open, in a
/// group over its limit.
fn overdue_from(e: &Entry) -> Option<i64> {
    match (e.open, e.group_sla) {
        (false, _) => None,
        (true, RowSla::Over) => Some(i64::MIN),
        (true, _) => (e.group_over_at != NEVER).then_some(e.group_over_at),
    }
}

impl ProjectIndex {
    pub fn new(project_id: i64, revision: i64, rules: Arc<ProjectRules>) -> Self {
        ProjectIndex {
            project_id,
            revision,
            rules,
            version: Version { generation: random_generation(), changes: 0 },
            history: std::collections::VecDeque::new(),
            entries: Vec::new(),
            keys: Vec::new(),
            positions: BTreeMap::new(),
            changed: BTreeSet::new(),
            created: BTreeSet::new(),
            changed_in_group: HashMap::new(),
            created_in_group: HashMap::new(),
            working: Lanes::new(),
            wall: Lanes::new(),
            overdue: BTreeSet::new(),
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries' keys, at the entries' positions.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn get(&self, order_id: i64) -> Option<&Entry> {
        self.positions.get(&order_id).map(|i| &self.entries[*i])
    }

    /// The orders overdue at `as_of` as their entries say (an entry changed after `as_of` may be
    /// among them or not: the caller tests each), when there are at most `at_most`.
    pub fn overdue_at(&self, as_of: i64, at_most: usize) -> Option<Vec<i64>> {
        let ids: Vec<i64> = self.overdue.range(..=(as_of, i64::MAX)).map(|(_, id)| *id).take(at_most + 1).collect();
        (ids.len() <= at_most).then_some(ids)
    }

    /// The positions of the orders whose id starts with `prefix`'s digits (shorter ids first):
    /// a filter by id reads only the orders it matches instead of testing every id.
    pub fn positions_with_prefix(&self, prefix: IdPrefix) -> impl Iterator<Item = usize> + '_ {
        prefix_ranges(prefix)
            .into_iter()
            .flat_map(|ids| self.positions_between(ids))
            .filter(move |i| prefix.matches(self.keys[*i].order_id))
    }

    /// The positions of the orders whose ids lie in `ids`, in id order.
    pub fn positions_between(&self, ids: RangeInclusive<i64>) -> impl Iterator<Item = usize> + '_ {
        self.positions.range(ids).map(|(_, i)| *i)
    }

    /// Order ids in ascending order from (excluding) `after`, or descending below it.
    pub fn ids(&self, descending: bool, after: Option<i64>) -> Box<dyn Iterator<Item = i64> + '_> {
        use std::ops::Bound::{Excluded, Unbounded};
        match (descending, after) {
            (false, None) => Box::new(self.positions.keys().copied()),
            (false, Some(a)) => Box::new(self.positions.range((Excluded(a), Unbounded)).map(|(id, _)| *id)),
            (true, None) => Box::new(self.positions.keys().rev().copied()),
            (true, Some(a)) => Box::new(self.positions.range(..a).rev().map(|(id, _)| *id)),
        }
    }

    /// Puts the row's entry in place of the order's older one (remembering the older one).
    pub fn apply(&mut self, row: &OrderRow) {
        let entry = Entry::from_row(row, &self.rules);
        let replaced = match self.positions.get(&row.order_id) {
            Some(&i) if self.entries[i].replaced_by(&entry) => {
                self.unkey(i);
                self.keys[i] = Key::of(&entry);
                let old = std::mem::replace(&mut self.entries[i], entry);
                self.key(i);
                Some(old)
            }
            Some(_) => return,
            None => {
                self.positions.insert(row.order_id, self.entries.len());
                self.keys.push(Key::of(&entry));
                self.entries.push(entry);
                self.key(self.entries.len() - 1);
                None
            }
        };
        self.version.changes += 1;
        self.history.push_back((self.version.changes, row.order_id, replaced));
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    /// Where the index stands now.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The orders changed since `version`, each as it was then (`None`: it did not exist);
    /// `None` when `version` is not this index's or is older than the changes it keeps.
    pub fn as_it_was(&self, version: Version) -> Option<HashMap<i64, Option<&Entry>>> {
        if version.generation != self.version.generation || version.changes > self.version.changes {
            return None;
        }
        let kept_from = self.history.front().map_or(self.version.changes, |(change, _, _)| change - 1);
        if version.changes < kept_from {
            return None;
        }
        // Newest first, only the changes since `version` (none for a first page): an order
        // changed twice ends with the entry its first change replaced.
        let mut was = HashMap::new();
        for (_, order_id, old) in self.history.iter().rev().take_while(|(change, _, _)| *change > version.changes) {
            was.insert(*order_id, old.as_ref());
        }
        Some(was)
    }

    fn key(&mut self, i: usize) {
        let e = &self.entries[i];
        self.changed.insert((e.last, e.order_id));
        self.created.insert((e.started_at, e.order_id));
        self.changed_in_group.entry(e.group_id).or_default().insert((e.last, e.order_id));
        self.created_in_group.entry(e.group_id).or_default().insert((e.started_at, e.order_id));
        lanes_insert(&mut self.working, working_lane(e), e.order_id);
        lanes_insert(&mut self.wall, wall_lane(e), e.order_id);
        if let Some(from) = overdue_from(e) {
            self.overdue.insert((from, e.order_id));
        }
    }

    fn unkey(&mut self, i: usize) {
        let e = &self.entries[i];
        self.changed.remove(&(e.last, e.order_id));
        self.created.remove(&(e.started_at, e.order_id));
        if let Some(set) = self.changed_in_group.get_mut(&e.group_id) {
            set.remove(&(e.last, e.order_id));
        }
        if let Some(set) = self.created_in_group.get_mut(&e.group_id) {
            set.remove(&(e.started_at, e.order_id));
        }
        lanes_remove(&mut self.working, working_lane(e), e.order_id);
        lanes_remove(&mut self.wall, wall_lane(e), e.order_id);
        if let Some(from) = overdue_from(e) {
            self.overdue.remove(&(from, e.order_id));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The ranges of ids that begin with `prefix`'s digits, one per length (`[value·10ᵏ, (value +
/// 1)·10ᵏ)`), shortest first. They hold no other id, unless the prefix has a leading zero (then
/// [`IdPrefix::matches`] refuses every id in them).
pub fn prefix_ranges(prefix: IdPrefix) -> Vec<RangeInclusive<i64>> {
    // `0` begins no longer id; any other value begins one disjoint range of ids per length.
    let lengths = if prefix.value == 0 { 1 } else { 20 };
    let mut ranges = Vec::new();
    for k in 0..lengths {
        let scale = 10u64.pow(k);
        let Some(low) = prefix.value.checked_mul(scale).and_then(|low| i64::try_from(low).ok()) else { break };
        let high = prefix.value.checked_add(1).and_then(|v| v.checked_mul(scale)).and_then(|high| i64::try_from(high - 1).ok());
        ranges.push(low..=high.unwrap_or(i64::MAX));
    }
    ranges
}

/// `ids` cut into `parts` consecutive ranges of about as many ids each (fewer ranges when it
/// holds fewer ids).
pub fn split_ids(ids: RangeInclusive<i64>, parts: usize) -> Vec<RangeInclusive<i64>> {
    let (first, last) = (i128::from(*ids.start()), i128::from(*ids.end()));
    let count = last - first + 1;
    if count <= 0 {
        return Vec::new();
    }
    let parts = (parts.max(1) as i128).min(count);
    let id = |n: i128| i64::try_from(n).expect("within the range");
    (0..parts).map(|n| id(first + count * n / parts)..=id(first + count * (n + 1) / parts - 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_positions_with_a_prefix_are_those_whose_digits_begin_with_it() {
        let ids = [0, 1, 5, 9, 10, 49, 50, 55, 59, 60, 500, 599, 600, 5_000_000, 5_999_999, 6_000_000, 1_234_567, i64::MAX, i64::MAX - 1];
        let positions: BTreeMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let prefixes = ["5", "50", "59", "599", "0", "1", "07", "9", "922", "1234567"];
        let long = ["9223372036854775807", "9223372036854775808", "18446744073709551615"];
        for text in prefixes.into_iter().chain(long) {
            let prefix = IdPrefix { value: text.parse().unwrap(), digits: text.len() as u32 };
            let ranges = prefix_ranges(prefix);
            let mut found: Vec<i64> =
                ranges.iter().flat_map(|r| positions.range(r.clone())).map(|(id, _)| *id).filter(|id| prefix.matches(*id)).collect();
            let mut wanted: Vec<i64> = ids.iter().copied().filter(|id| id.to_string().starts_with(text)).collect();
            found.sort_unstable();
            wanted.sort_unstable();
            assert_eq!(found, wanted, "q={text}");
        }
    }

    #[test]
    fn split_ids_cover_the_range_once_in_order() {
        for (ids, parts) in [(0..=99, 2), (5..=5, 3), (1..=10, 3), (i64::MIN..=i64::MAX, 2), (i64::MAX - 1..=i64::MAX, 8), (7..=3, 2)] {
            let split = split_ids(ids.clone(), parts);
            assert!(split.len() <= parts, "{ids:?} in {parts}: {split:?}");
            let mut next = i128::from(*ids.start());
            for part in &split {
                assert!(part.start() <= part.end(), "{ids:?} in {parts}: {split:?}");
                assert_eq!(i128::from(*part.start()), next, "{ids:?} in {parts}: {split:?}");
                next = i128::from(*part.end()) + 1;
            }
            assert_eq!(
                next,
                if ids.is_empty() { i128::from(*ids.start()) } else { i128::from(*ids.end()) + 1 },
                "{ids:?} in {parts}: {split:?}"
            );
        }
        assert_eq!(split_ids(0..=99, 2), vec![0..=49, 50..=99]);
    }
}
