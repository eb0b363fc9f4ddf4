//! Orders measured at one instant: which match the filters, in what order, and their KPIs. Pure
//! functions over [`Entry`]s; the handlers fetch the entries and shape the answers.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use ksa_domain::ProjectRules;
use ksa_schemas::Timestamp;
use ksa_schemas::row::RowSla;

use super::index::{Clocks, Entry, GroupTotals, Lane, Lanes, ProjectIndex, Version, prefix_ranges, split_ids};
use super::params::{Filters, Position, Sort, SortKey};

/// The state reached by `as_of` from crossing instants alone (none before near).
fn crossed(as_of: i64, near_at: i64, over_at: i64) -> RowSla {
    if as_of >= over_at {
        RowSla::Over
    } else if as_of >= near_at {
        RowSla::Near
    } else {
        RowSla::None
    }
}

/// An entry measured at the listing's `as_of`.
pub struct Measured<'a> {
    pub entry: &'a Entry,
    /// Working and wall time of the open interval since the entry's `at`.
    pub growth: i64,
    pub wall_growth: i64,
}

impl Entry {
    /// The worst state over groups and statuses at `as_of` (not before the entry's `at`).
    pub fn sla_at(&self, as_of: i64) -> RowSla {
        self.sla.max(crossed(as_of, self.near_at, self.over_at))
    }
}

impl Measured<'_> {
    pub fn measure<'a>(entry: &'a Entry, clocks: &mut Clocks) -> Measured<'a> {
        Measured { growth: clocks.growth(entry), wall_growth: clocks.wall_growth(entry), entry }
    }

    /// The worst state over groups and statuses at `as_of`.
    pub fn sla(&self, as_of: i64) -> RowSla {
        self.entry.sla_at(as_of)
    }

    /// A group's state at `as_of` (its stored state, or the crossing of its limit since for
    /// the current group).
    pub fn group_sla(&self, group_id: u16, as_of: i64) -> RowSla {
        let e = self.entry;
        let stored = e.groups.iter().find(|g| g.group_id == group_id).map_or(RowSla::None, |g| g.sla);
        if !(e.open && e.group_id == group_id) {
            return stored;
        }
        stored.max(crossed(as_of, e.group_near_at, e.group_over_at))
    }

    /// In a non-terminal group whose state is over at `as_of`.
    pub fn overdue(&self, as_of: i64) -> bool {
        let e = self.entry;
        e.open && (e.group_sla == RowSla::Over || as_of >= e.group_over_at)
    }

    pub fn working(&self) -> i64 {
        self.entry.working + self.growth
    }

    pub fn wall(&self) -> i64 {
        self.entry.wall + self.wall_growth
    }

    /// A cycle's working and wall time at `as_of`, and whether it is still open.
    pub fn cycle(&self, cycle_id: u32) -> Option<(i64, i64, bool)> {
        let c = self.entry.cycles.iter().find(|c| c.cycle_id == cycle_id)?;
        Some(if c.open { (c.working + self.growth, c.wall + self.wall_growth, true) } else { (c.working, c.wall, false) })
    }

    /// A group's working and wall time at `as_of` and its visits; `None` when never visited.
    pub fn group(&self, group_id: u16) -> Option<(i64, i64, u32)> {
        let g = self.entry.groups.iter().find(|g| g.group_id == group_id)?;
        let (working, wall) = self.group_totals(g);
        Some((working, wall, g.visits))
    }

    /// The working and wall time at `as_of` of one of the entry's groups.
    pub fn group_totals(&self, g: &GroupTotals) -> (i64, i64) {
        let current = self.entry.open && self.entry.group_id == g.group_id;
        if current { (g.working + self.growth, g.wall + self.wall_growth) } else { (g.working, g.wall) }
    }

    pub fn matches(&self, filters: &Filters, as_of: i64) -> bool {
        self.entry.may_match(filters) && self.matches_in_time(filters, as_of)
    }

    /// [`Measured::matches`] of an entry known to pass [`Entry::may_match`]: the filters whose
    /// answer changes with time.
    pub fn matches_in_time(&self, filters: &Filters, as_of: i64) -> bool {
        filters.sla.is_none_or(|sla| sla == self.sla(as_of))
            && (!filters.overdue || self.overdue(as_of))
            && filters.cycle.is_none_or(|id| match (self.cycle(id), filters.cycle_open) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some((_, _, open)), Some(wanted)) => open == wanted,
            })
    }

    /// The value the list is sorted by.
    pub fn sort_value(&self, key: SortKey, cycle: Option<u32>) -> i64 {
        match (key, cycle) {
            (SortKey::Working, Some(id)) => self.cycle(id).map_or(0, |c| c.0),
            (SortKey::Wall, Some(id)) => self.cycle(id).map_or(0, |c| c.1),
            (SortKey::Working, None) => self.working(),
            (SortKey::Wall, None) => self.wall(),
            (SortKey::Created, _) => self.entry.started_at,
            (SortKey::Changed, _) => self.entry.last,
            (SortKey::Id, _) => self.entry.order_id,
        }
    }
}

/// `(value, order id)` in the listing's order.
fn compare(sort: Sort, a: (i64, i64), b: (i64, i64)) -> Ordering {
    if sort.descending { b.cmp(&a) } else { a.cmp(&b) }
}

/// Orders as one listing sees them: at its `as_of`, and as the index stood at the listing's
/// first page. Orders that changed since are `pinned`: as they were then, or measured again at
/// `as_of` from their events when their latest event is after it (`None`: the order did not
/// exist then); every other order is the index's entry, if its latest event is not after
/// `as_of`.
pub struct Snapshot<'a> {
    pub index: &'a ProjectIndex,
    pub pinned: HashMap<i64, Option<&'a Entry>>,
    pub as_of: i64,
    /// Up to this many orders overdue at `as_of` (`overdue=true`), or with ids that begin with
    /// `q`, a listing reads those alone; beyond it, they are common enough that walking the
    /// index in the listing's order finds them soon.
    pub few: usize,
}

impl<'a> Snapshot<'a> {
    /// `past`: entries measured again at `as_of`; `since`: the index's version at the first
    /// page (orders changed after it are taken as they were then, while the index keeps them).
    pub fn new(index: &'a ProjectIndex, past: &'a HashMap<i64, Entry>, since: Option<Version>, as_of: i64) -> Self {
        let mut pinned: HashMap<i64, Option<&'a Entry>> = HashMap::with_capacity(past.len());
        if let Some(was) = since.and_then(|version| index.as_it_was(version)) {
            pinned.extend(was.into_iter().map(|(id, entry)| (id, entry.filter(|e| e.last <= as_of))));
        }
        pinned.extend(past.iter().map(|(id, entry)| (*id, Some(entry))));
        Snapshot { index, pinned, as_of, few: FEW }
    }

    /// The entry of the order at `as_of`, if it existed then.
    pub fn get(&self, order_id: i64) -> Option<&'a Entry> {
        match self.pinned.get(&order_id) {
            Some(pinned) => *pinned,
            None => self.index.get(order_id).filter(|e| e.last <= self.as_of),
        }
    }

    /// With `overdue=true`, when at most [`Snapshot::few`] orders are overdue at `as_of`: every
    /// entry that may be (pinned ones included), in no order; else `None` (walk them all).
    pub fn overdue_only(&self, filters: &Filters) -> Option<Vec<&'a Entry>> {
        if !filters.overdue {
            return None;
        }
        let ids = self.index.overdue_at(self.as_of, self.few)?;
        let (index, as_of) = (self.index, self.as_of);
        let current = ids.into_iter().filter(|id| !self.pinned.contains_key(id)).filter_map(|id| index.get(id).filter(|e| e.last <= as_of));
        Some(current.chain(self.pinned.values().flatten().copied()).collect())
    }

    /// With `q=`, when at most [`Snapshot::few`] ids begin with it: every entry that may match
    /// (pinned ones included), in no order; else `None`. Looking an order up by its id reads
    /// that order, not the whole index in the listing's order.
    pub fn with_prefix_only(&self, filters: &Filters) -> Option<Vec<&'a Entry>> {
        // One past `few` tells that there are too many, without collecting them all.
        let positions: Vec<usize> = self.index.positions_with_prefix(filters.q?).take(self.few.saturating_add(1)).collect();
        if positions.len() > self.few {
            return None;
        }
        let (entries, as_of) = (self.index.entries(), self.as_of);
        let current = positions.into_iter().map(|i| &entries[i]).filter(|e| e.last <= as_of && !self.pinned.contains_key(&e.order_id));
        Some(current.chain(self.pinned.values().flatten().copied()).collect())
    }

    /// Every entry at `as_of`, in no order.
    pub fn entries(&self) -> impl Iterator<Item = &'a Entry> + '_ {
        let as_of = self.as_of;
        self.index
            .entries()
            .iter()
            .filter(move |e| e.last <= as_of && !self.pinned.contains_key(&e.order_id))
            .chain(self.pinned.values().flatten().copied())
    }
}

type Keyed<'a> = Box<dyn Iterator<Item = (i64, i64)> + 'a>;

/// [`Snapshot::few`] by default.
pub const FEW: usize = 50_000;

/// One ordered set shifted by `offset`, from after `after` (a key at `as_of`).
fn set_lane(set: &BTreeSet<(i64, i64)>, offset: i64, descending: bool, after: Option<(i64, i64)>) -> Keyed<'_> {
    use std::ops::Bound::{Excluded, Unbounded};
    let after = after.map(|(value, id)| (value.saturating_sub(offset), id));
    let keys: Box<dyn Iterator<Item = &(i64, i64)>> = match (descending, after) {
        (false, None) => Box::new(set.iter()),
        (false, Some(a)) => Box::new(set.range((Excluded(a), Unbounded))),
        (true, None) => Box::new(set.iter().rev()),
        (true, Some(a)) => Box::new(set.range(..a).rev()),
    };
    Box::new(keys.map(move |(base, id)| (base + offset, *id)))
}

/// Keys computed for this listing, sorted.
fn computed_lane(mut keys: Vec<(i64, i64)>, sort: Sort, after: Option<(i64, i64)>) -> Keyed<'static> {
    keys.retain(|key| after.is_none_or(|a| compare(sort, *key, a) == Ordering::Greater));
    keys.sort_unstable_by(|a, b| compare(sort, *a, *b));
    Box::new(keys.into_iter())
}

/// Lanes merged into one listing.
struct Merge<'a> {
    lanes: Vec<std::iter::Peekable<Keyed<'a>>>,
    sort: Sort,
}

impl Iterator for Merge<'_> {
    /// The lane it came from, and the key.
    type Item = (usize, (i64, i64));

    fn next(&mut self) -> Option<(usize, (i64, i64))> {
        let sort = self.sort;
        let mut best: Option<(usize, (i64, i64))> = None;
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            if let Some(&key) = lane.peek()
                && best.is_none_or(|(_, b)| compare(sort, key, b) == Ordering::Less)
            {
                best = Some((i, key));
            }
        }
        let (i, _) = best?;
        self.lanes[i].next().map(|key| (i, key))
    }
}

/// Whether orders in `lane` can match `filters` at all.
fn lane_may_match(lane: Lane, filters: &Filters, rules: &ProjectRules) -> bool {
    let groups = |wanted: &dyn Fn(u16) -> bool| filters.groups.as_ref().is_none_or(|g| g.iter().any(|g| wanted(*g)));
    match lane {
        Lane::Closed => filters.open != Some(true) && groups(&|g| rules.is_terminal(g)),
        Lane::Group(id) => filters.open != Some(false) && groups(&|g| g == id),
        Lane::Open | Lane::Irregular => filters.open != Some(false),
    }
}

/// The snapshot's entries in the listing's order after `after`, each with its sort value;
/// filters are not applied (lanes that cannot match are left out).
pub fn ordered<'a, 's>(
    snapshot: &'s Snapshot<'a>,
    clocks: &mut Clocks,
    filters: &Filters,
    sort: Sort,
    after: Option<Position>,
) -> Box<dyn Iterator<Item = (i64, &'a Entry)> + 's> {
    let after = after.map(|p| (p.value, p.order_id));
    let index = snapshot.index;
    let as_of = snapshot.as_of;
    let descending = sort.descending;
    if let Some(few) = snapshot.overdue_only(filters).or_else(|| snapshot.with_prefix_only(filters)) {
        // Few are overdue, or have such ids: their keys are computed and sorted, rather than
        // walking every lane past the orders that are not (all of them, when none is).
        let keys = few.into_iter().map(|e| (Measured::measure(e, clocks).sort_value(sort.key, filters.cycle), e.order_id)).collect();
        return Box::new(computed_lane(keys, sort, after).filter_map(move |(key, id)| snapshot.get(id).map(|e| (key, e))));
    }
    // Pinned orders are a lane of their own, the first.
    let pinned_keys: Vec<(i64, i64)> = snapshot
        .pinned
        .values()
        .flatten()
        .map(|e| (Measured::measure(e, clocks).sort_value(sort.key, filters.cycle), e.order_id))
        .collect();
    let mut lanes: Vec<Keyed<'a>> = vec![computed_lane(pinned_keys, sort, after)];
    let mut lanes_of = |sets: &'a Lanes, offset: &mut dyn FnMut(Lane) -> Option<i64>| -> bool {
        for (lane, set) in sets {
            if !lane_may_match(*lane, filters, &index.rules) {
                continue;
            }
            match (lane, offset(*lane)) {
                (Lane::Irregular, _) | (_, None) => return false,
                (_, Some(offset)) => lanes.push(set_lane(set, offset, descending, after)),
            }
        }
        true
    };
    let fast = match (sort.key, filters.cycle) {
        (SortKey::Working | SortKey::Wall, Some(_)) => false,
        (SortKey::Working, None) => lanes_of(&index.working, &mut |lane| match lane {
            Lane::Closed => Some(0),
            Lane::Group(id) => clocks.at_as_of(id),
            _ => None,
        }),
        (SortKey::Wall, None) => lanes_of(&index.wall, &mut |lane| match lane {
            Lane::Closed => Some(0),
            Lane::Open => Some(as_of),
            _ => None,
        }),
        (SortKey::Changed | SortKey::Created, _) => {
            let (all, in_group) = match sort.key {
                SortKey::Changed => (&index.changed, &index.changed_in_group),
                _ => (&index.created, &index.created_in_group),
            };
            match &filters.groups {
                // Only the wanted groups' orders.
                Some(groups) => {
                    let wanted: BTreeSet<u16> = groups.iter().copied().collect();
                    lanes.extend(wanted.iter().filter_map(|g| in_group.get(g)).map(|set| set_lane(set, 0, descending, after)));
                }
                None => lanes.push(set_lane(all, 0, descending, after)),
            }
            true
        }
        (SortKey::Id, _) => {
            lanes.push(Box::new(index.ids(descending, after.map(|a| a.1)).map(|id| (id, id))));
            true
        }
    };
    if !fast {
        // Keys that no lane keeps: computed for every entry, then sorted.
        let keys = snapshot.entries().map(|e| (Measured::measure(e, clocks).sort_value(sort.key, filters.cycle), e.order_id)).collect();
        return Box::new(computed_lane(keys, sort, after).filter_map(move |(key, id)| snapshot.get(id).map(|e| (key, e))));
    }
    let (pinned, merge) = (&snapshot.pinned, Merge { lanes: lanes.into_iter().map(Iterator::peekable).collect(), sort });
    Box::new(merge.filter_map(move |(lane, (key, id))| match lane {
        0 => pinned.get(&id).copied().flatten().map(|entry| (key, entry)),
        // A pinned order comes from the first lane only; an index entry whose latest event is
        // after `as_of` is not listed (it is pinned if it existed then).
        _ if pinned.contains_key(&id) => None,
        _ => index.get(id).filter(|entry| entry.last <= as_of).map(|entry| (key, entry)),
    }))
}

/// The first `limit` matching entries after `after`, in the listing's order, with where each
/// sits (for the next cursor).
pub fn page<'a>(
    snapshot: &Snapshot<'a>,
    clocks: &mut Clocks,
    filters: &Filters,
    sort: Sort,
    after: Option<Position>,
    limit: usize,
) -> Vec<(&'a Entry, Position)> {
    let mut found = Vec::with_capacity(limit.min(1_024));
    let as_of = snapshot.as_of;
    let listing = ordered(snapshot, clocks, filters, sort, after);
    for (value, entry) in listing {
        if entry.may_match(filters) && Measured::measure(entry, clocks).matches_in_time(filters, as_of) {
            found.push((entry, Position { value, order_id: entry.order_id }));
            if found.len() == limit {
                break;
            }
        }
    }
    found
}

/// Mean, median, p90, p95 (nearest rank, docs/analytics.md), sum and count of `values`
/// (microseconds), as seconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub count: u64,
    pub sum: f64,
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
}

pub use ksa_domain::quantile::nearest_rank;

fn seconds(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// The statistics of `values`, picking the quantiles without sorting (the same values
/// [`nearest_rank`] gives on the sorted list).
pub fn stats(values: Vec<i64>) -> Stats {
    stats_of_parts(vec![values])
}

/// Values gathered in parts (by the threads of one computation), never copied into one list.
type Parts = Vec<Vec<i64>>;

/// [`stats`] of the values of every part together.
fn stats_of_parts(parts: Parts) -> Stats {
    let (count, sum, least, greatest) = summary(&parts);
    let [median, p90, p95] = match count {
        0 => [None; 3],
        _ => at_ranks_within(&parts, [50, 90, 95].map(|percent| ksa_domain::quantile::rank(count, percent)), least, greatest)
            .map(|v| Some(seconds(v))),
    };
    give_back(parts);
    Stats { count: count as u64, sum: seconds(sum), mean: (count > 0).then(|| seconds(sum) / count as f64), median, p90, p95 }
}

/// Lists of values kept between computations, the longest last: KPIs over a million orders
/// gather about sixteen million values, and memory taken fresh from the system costs about as
/// much to clear and to move as it grows as the values cost to gather.
static SPARE: std::sync::Mutex<Vec<Vec<i64>>> = std::sync::Mutex::new(Vec::new());

/// At most this many values' room is kept in [`SPARE`] (256 MiB).
const SPARE_VALUES: usize = 32 << 20;

/// An empty list, with the room of the longest spare one.
fn spare_list() -> Vec<i64> {
    SPARE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_default()
}

/// Keeps the lists' room for later computations, up to [`SPARE_VALUES`].
fn give_back(lists: Parts) {
    let mut spare = SPARE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut kept: usize = spare.iter().map(Vec::capacity).sum();
    for mut list in lists {
        if list.capacity() > 0 && kept + list.capacity() <= SPARE_VALUES {
            list.clear();
            kept += list.capacity();
            spare.push(list);
        }
    }
    spare.sort_unstable_by_key(Vec::capacity);
}

/// The statistics of each list of values, the lists shared among the machine's cores (the
/// largest first, each to the least loaded core).
fn stats_of_lists(lists: Vec<Parts>) -> Vec<Stats> {
    let sizes: Vec<usize> = lists.iter().map(|parts| parts.iter().map(Vec::len).sum()).collect();
    let total: usize = sizes.iter().sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(total / BUCKETED).clamp(1, lists.len().max(1));
    if cores == 1 {
        return lists.into_iter().map(stats_of_parts).collect();
    }
    let mut order: Vec<usize> = (0..lists.len()).collect();
    order.sort_unstable_by_key(|i| std::cmp::Reverse(sizes[*i]));
    let mut shares: Vec<(usize, Vec<(usize, Parts)>)> = (0..cores).map(|_| (0, Vec::new())).collect();
    let mut lists: Vec<Option<Parts>> = lists.into_iter().map(Some).collect();
    for i in order {
        let least = shares.iter_mut().min_by_key(|(load, _)| *load).expect("at least one core");
        least.0 += sizes[i];
        least.1.push((i, lists[i].take().unwrap_or_default()));
    }
    let mut out = vec![Stats::default(); lists.len()];
    let computed = std::thread::scope(|scope| {
        let mut shares = shares.into_iter().map(|(_, share)| share);
        let first = shares.next().unwrap_or_default();
        let others: Vec<_> = shares
            .map(|share| scope.spawn(move || share.into_iter().map(|(i, parts)| (i, stats_of_parts(parts))).collect::<Vec<_>>()))
            .collect();
        let mut computed: Vec<(usize, Stats)> = first.into_iter().map(|(i, parts)| (i, stats_of_parts(parts))).collect();
        for other in others {
            match other.join() {
                Ok(more) => computed.extend(more),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        computed
    });
    for (i, stats) in computed {
        out[i] = stats;
    }
    out
}

/// Below this many values, quantiles are picked by selection alone.
const BUCKETED: usize = 4_096;

/// [`at_ranks_within`] of every value of the parts.
#[cfg(test)]
fn at_ranks(parts: &[Vec<i64>], ranks: [usize; 3]) -> [i64; 3] {
    let (_, _, least, greatest) = summary(parts);
    at_ranks_within(parts, ranks, least, greatest)
}

/// How many values the parts hold, their sum, the least and the greatest, in one pass.
fn summary(parts: &[Vec<i64>]) -> (usize, i64, i64, i64) {
    let (sum, least, greatest) =
        parts.iter().flatten().fold((0i64, i64::MAX, i64::MIN), |(sum, lo, hi), v| (sum.wrapping_add(*v), lo.min(*v), hi.max(*v)));
    (parts.iter().map(Vec::len).sum(), sum, least, greatest)
}

/// The values at `ranks` (1-based, ascending, within the number of values) of the values of
/// every part sorted together, which lie within `[min, max]`. Over many values, one pass counts
/// them into buckets of their range (about sixteen values each, at most 65,536 buckets) and a
/// second keeps only the few buckets the ranks fall in, to select from: about twice as fast as
/// selecting over a million values, and never slower than it (a bucket holding most values is
/// one selection).
fn at_ranks_within(parts: &[Vec<i64>], ranks: [usize; 3], min: i64, max: i64) -> [i64; 3] {
    let count: usize = parts.iter().map(Vec::len).sum();
    if count < BUCKETED {
        let mut values: Vec<i64> = parts.iter().flatten().copied().collect();
        return select_ranks(&mut values, ranks);
    }
    let values = || parts.iter().flatten();
    // The exact distance from the least value, whatever their signs.
    let width = max.wrapping_sub(min) as u64;
    // About sixteen values per bucket, at most 65,536 buckets.
    let bits = (usize::BITS - (count / 16).leading_zeros()).clamp(8, 16);
    let shift = (u64::BITS - width.leading_zeros()).saturating_sub(bits);
    let bucket = |v: i64| (v.wrapping_sub(min) as u64 >> shift) as usize;
    let mut counts = vec![0u32; (width >> shift) as usize + 1];
    for v in values() {
        counts[bucket(*v)] += 1;
    }
    // Each rank's bucket, and its rank within the bucket.
    let mut wanted = [(0usize, 0usize); 3];
    let (mut below, mut b) = (0usize, 0usize);
    for (i, rank) in ranks.into_iter().enumerate() {
        while below + (counts[b] as usize) < rank {
            below += counts[b] as usize;
            b += 1;
        }
        wanted[i] = (b, rank - below);
    }
    let mut kept: [Vec<i64>; 3] = Default::default();
    for v in values() {
        let b = bucket(*v);
        // Ranks are ascending: a bucket is kept once, by the first rank in it.
        if let Some(i) = wanted.iter().position(|(w, _)| *w == b) {
            kept[i].push(*v);
        }
    }
    let mut out = [0; 3];
    for i in 0..3 {
        let first = wanted.iter().position(|(w, _)| *w == wanted[i].0).unwrap_or(i);
        let (_, value, _) = kept[first].select_nth_unstable(wanted[i].1 - 1);
        out[i] = *value;
    }
    out
}

/// [`at_ranks_within`] by selection: each rank in increasing order, everything left of the last one
/// being no greater.
fn select_ranks(values: &mut [i64], ranks: [usize; 3]) -> [i64; 3] {
    let mut from = 0;
    ranks.map(|rank| {
        let (_, value, _) = values[from..].select_nth_unstable(rank - 1 - from);
        from = rank - 1;
        *value
    })
}

/// The KPIs of every matching order at `as_of`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Kpis {
    pub count: u64,
    pub urgent: u64,
    pub normal: u64,
    pub pending: u64,
    pub open: u64,
    /// Per group, over the orders that visited it: the order's total time in the group.
    pub groups: BTreeMap<u16, GroupKpi>,
    /// Per cycle, over the orders whose cycle is done.
    pub cycles: BTreeMap<u32, CycleKpi>,
    pub sla: SlaKpi,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GroupKpi {
    pub orders: u64,
    pub working_seconds: Stats,
    pub wall_seconds: Stats,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CycleKpi {
    pub completed: u64,
    pub open: u64,
    pub working_seconds: Stats,
    pub wall_seconds: Stats,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SlaKpi {
    pub ok: u64,
    pub near: u64,
    pub over: u64,
    pub none: u64,
    pub share_ok: Option<f64>,
    pub share_near: Option<f64>,
    pub share_over: Option<f64>,
    pub share_none: Option<f64>,
    /// In a non-terminal group over its limit now.
    pub overdue: u64,
}

/// The KPIs of every matching order among `entries` at `clocks`' instant.
pub fn kpis<'a>(entries: impl Iterator<Item = &'a Entry>, clocks: &mut Clocks, filters: &Filters) -> Kpis {
    let mut tally = Tally::default();
    for entry in entries {
        if entry.may_match(filters) {
            tally.add(entry, clocks, filters);
        }
    }
    Tally::finish(vec![tally])
}

/// Entries a thread of [`snapshot_kpis`] takes at least.
pub const KPI_CHUNK: usize = 100_000;

/// [`kpis`] over every entry of `snapshot`, the index's entries split among the machine's
/// cores (in chunks of at least `min_chunk`): over a million orders, most of the time goes to
/// walking and measuring entries, which parts of the index can do side by side.
pub fn snapshot_kpis(snapshot: &Snapshot, filters: &Filters, min_chunk: usize) -> Kpis {
    let (index, as_of) = (snapshot.index, Timestamp::from_micros(snapshot.as_of));
    if let Some(overdue) = snapshot.overdue_only(filters) {
        return kpis(overdue.into_iter(), &mut Clocks::new(&index.rules, as_of), filters);
    }
    let (entries, keys) = (index.entries(), index.keys());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(entries.len() / min_chunk.max(1)).max(1);
    let tally_of = &|part: Part| {
        let mut clocks = Clocks::new(&index.rules, as_of);
        let mut tally = Tally::default();
        let add = |i: usize| {
            let key = &keys[i];
            if key.last <= snapshot.as_of && key.may_match(filters) && !snapshot.pinned.contains_key(&key.order_id) {
                tally.add(&entries[i], &mut clocks, filters);
            }
        };
        match part {
            Part::Positions(positions) => positions.for_each(add),
            Part::Ids(ranges) => ranges.into_iter().flat_map(|ids| index.positions_between(ids)).for_each(add),
        }
        tally
    };
    // With `q=`, each thread reads a share of the ids that begin so (a tenth of the index for one
    // digit); else a share of the positions, the keys first: the entry of an order that cannot
    // match is never read.
    let parts: Vec<Part> = match filters.q {
        Some(q) => {
            let mut shares = vec![Vec::new(); threads];
            // Cut within the ids the index holds, so the shares hold about as many orders.
            let held = index.ids(false, None).next().zip(index.ids(true, None).next());
            for ids in prefix_ranges(q) {
                let Some((least, greatest)) = held else { break };
                let ids = (*ids.start()).max(least)..=(*ids.end()).min(greatest);
                for (share, part) in shares.iter_mut().zip(split_ids(ids, threads)) {
                    share.push(part);
                }
            }
            shares.into_iter().map(Part::Ids).collect()
        }
        None => {
            let chunk = entries.len().div_ceil(threads).max(1);
            (0..entries.len()).step_by(chunk).map(|start| Part::Positions(start..(start + chunk).min(entries.len()))).collect()
        }
    };
    let mut tallies = std::thread::scope(|scope| {
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or(Part::Positions(0..0));
        let others: Vec<_> = parts.map(|part| scope.spawn(move || tally_of(part))).collect();
        let mut tallies = vec![tally_of(first)];
        for other in others {
            match other.join() {
                Ok(other) => tallies.push(other),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        tallies
    });
    let mut clocks = Clocks::new(&index.rules, as_of);
    let mut pinned = Tally::default();
    for entry in snapshot.pinned.values().flatten().filter(|e| e.may_match(filters)) {
        pinned.add(entry, &mut clocks, filters);
    }
    tallies.push(pinned);
    Tally::finish(tallies)
}

/// What one thread of [`snapshot_kpis`] reads: positions of the index, or the orders with ids
/// in some ranges.
enum Part {
    Positions(std::ops::Range<usize>),
    Ids(Vec<std::ops::RangeInclusive<i64>>),
}

/// The value kept for `key` among a few, added when first asked for (a search along a handful
/// of groups or cycles is quicker than any map).
fn slot<K: PartialEq + Copy, V>(slots: &mut Vec<(K, V)>, key: K, new: impl FnOnce() -> V) -> &mut V {
    let i = match slots.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            slots.push((key, new()));
            slots.len() - 1
        }
    };
    &mut slots[i].1
}

/// The KPIs of some orders, before their statistics: counts, and each group's and cycle's
/// times.
#[derive(Default)]
struct Tally {
    kpis: Kpis,
    /// Per group: working and wall times of the orders that visited it.
    groups: Vec<(u16, (Vec<i64>, Vec<i64>))>,
    /// Per cycle: how many are open, and the done ones' working and wall times.
    cycles: Vec<(u32, (u64, Vec<i64>, Vec<i64>))>,
}

impl Tally {
    /// Counts the entry, which must pass [`Entry::may_match`], if it matches at `clocks`'
    /// instant.
    fn add(&mut self, entry: &Entry, clocks: &mut Clocks, filters: &Filters) {
        let as_of = clocks.as_of().as_micros();
        let measured = Measured::measure(entry, clocks);
        if !measured.matches_in_time(filters, as_of) {
            return;
        }
        let kpis = &mut self.kpis;
        kpis.count += 1;
        match entry.urgency {
            2 => kpis.urgent += 1,
            1 => kpis.normal += 1,
            _ => kpis.pending += 1,
        }
        if entry.open {
            kpis.open += 1;
        }
        for g in entry.groups.iter().filter(|g| g.visits > 0) {
            let (working, wall) = measured.group_totals(g);
            let values = slot(&mut self.groups, g.group_id, || (spare_list(), spare_list()));
            values.0.push(working);
            values.1.push(wall);
        }
        for c in entry.cycles.iter() {
            let values = slot(&mut self.cycles, c.cycle_id, || (0, spare_list(), spare_list()));
            if c.open {
                values.0 += 1;
            } else {
                values.1.push(c.working);
                values.2.push(c.wall);
            }
        }
        match measured.sla(as_of) {
            RowSla::Ok => kpis.sla.ok += 1,
            RowSla::Near => kpis.sla.near += 1,
            RowSla::Over => kpis.sla.over += 1,
            RowSla::None => kpis.sla.none += 1,
        }
        if measured.overdue(as_of) {
            kpis.sla.overdue += 1;
        }
    }

    /// The KPIs of the tallies' orders together; their values are not copied into one list.
    fn finish(tallies: Vec<Tally>) -> Kpis {
        let mut kpis = Kpis::default();
        let mut groups: BTreeMap<u16, (Parts, Parts)> = BTreeMap::new();
        let mut cycles: BTreeMap<u32, (u64, Parts, Parts)> = BTreeMap::new();
        for tally in tallies {
            let more = tally.kpis;
            kpis.count += more.count;
            kpis.urgent += more.urgent;
            kpis.normal += more.normal;
            kpis.pending += more.pending;
            kpis.open += more.open;
            kpis.sla.ok += more.sla.ok;
            kpis.sla.near += more.sla.near;
            kpis.sla.over += more.sla.over;
            kpis.sla.none += more.sla.none;
            kpis.sla.overdue += more.sla.overdue;
            for (group, (working, wall)) in tally.groups {
                let parts = groups.entry(group).or_default();
                parts.0.push(working);
                parts.1.push(wall);
            }
            for (cycle, (open, working, wall)) in tally.cycles {
                let parts = cycles.entry(cycle).or_default();
                parts.0 += open;
                parts.1.push(working);
                parts.2.push(wall);
            }
        }
        let len = |parts: &Parts| parts.iter().map(Vec::len).sum::<usize>() as u64;
        let group_counts: Vec<u64> = groups.values().map(|(working, _)| len(working)).collect();
        let cycle_counts: Vec<(u64, u64)> = cycles.values().map(|(open, working, _)| (*open, len(working))).collect();
        let (group_ids, cycle_ids): (Vec<u16>, Vec<u32>) = (groups.keys().copied().collect(), cycles.keys().copied().collect());
        let lists = groups
            .into_values()
            .flat_map(|(working, wall)| [working, wall])
            .chain(cycles.into_values().flat_map(|(_, working, wall)| [working, wall]))
            .collect();
        let mut stats = stats_of_lists(lists).into_iter();
        let mut pair = || (stats.next().unwrap_or_default(), stats.next().unwrap_or_default());
        for (group, orders) in group_ids.into_iter().zip(group_counts) {
            let (working_seconds, wall_seconds) = pair();
            kpis.groups.insert(group, GroupKpi { orders, working_seconds, wall_seconds });
        }
        for (cycle, (open, completed)) in cycle_ids.into_iter().zip(cycle_counts) {
            let (working_seconds, wall_seconds) = pair();
            kpis.cycles.insert(cycle, CycleKpi { completed, open, working_seconds, wall_seconds });
        }
        let share = |n: u64| (kpis.count > 0).then(|| n as f64 / kpis.count as f64);
        kpis.sla.share_ok = share(kpis.sla.ok);
        kpis.sla.share_near = share(kpis.sla.near);
        kpis.sla.share_over = share(kpis.sla.over);
        kpis.sla.share_none = share(kpis.sla.none);
        kpis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_sum_count_and_average() {
        let s = stats(vec![3_000_000, 1_000_000, 2_000_000]);
        assert_eq!((s.count, s.sum, s.mean, s.median), (3, 6.0, Some(2.0), Some(2.0)));
        assert_eq!(stats(Vec::new()), Stats::default());
    }

    #[test]
    fn bucketed_quantiles_equal_the_sorted_ones_whatever_the_spread() {
        let mut seed = 11u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 11
        };
        let spreads: [(&str, Box<dyn Fn(u64) -> i64>); 5] = [
            ("long tail", Box::new(|r| ((r % 1_000_000) as f64 / 1e6).powi(8).mul_add(3.0e12, 0.0) as i64)),
            ("one value", Box::new(|_| 42)),
            ("mostly zero", Box::new(|r| if r % 10 < 8 { 0 } else { (r % 100_000) as i64 })),
            (
                "both signs, extreme",
                Box::new(|r| match r % 3 {
                    0 => i64::MIN,
                    1 => i64::MAX,
                    _ => (r as i64) - (1 << 52),
                }),
            ),
            ("narrow", Box::new(|r| 1_000_000 + (r % 7) as i64)),
        ];
        for (name, spread) in spreads {
            for n in [4_096usize, 4_097, 50_000] {
                let values: Vec<i64> = (0..n).map(|_| spread(next())).collect();
                let mut sorted = values.clone();
                sorted.sort_unstable();
                let ranks = [50, 90, 95].map(|p| ksa_domain::quantile::rank(n, p));
                assert_eq!(at_ranks(&[values.clone()], ranks), ranks.map(|r| sorted[r - 1]), "{name}, {n} values");
                // The same values in parts (as the threads of one computation leave them).
                let parts: Vec<Vec<i64>> = values.chunks(n / 3 + 1).map(<[i64]>::to_vec).chain([Vec::new()]).collect();
                assert_eq!(at_ranks(&parts, ranks), ranks.map(|r| sorted[r - 1]), "{name}, {n} values in parts");
            }
        }
    }

    #[test]
    fn lists_shared_among_cores_give_each_its_own_statistics() {
        let mut seed = 5u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as i64 % 1_000_000_000
        };
        let lists: Vec<Parts> = [0usize, 1, 10_000, 300, 50_000, 4_096, 20_000]
            .iter()
            .map(|n| {
                let values: Vec<i64> = (0..*n).map(|_| next()).collect();
                values.chunks(7_000).map(<[i64]>::to_vec).collect()
            })
            .collect();
        let one_by_one: Vec<Stats> = lists.iter().cloned().map(stats_of_parts).collect();
        assert_eq!(stats_of_lists(lists.clone()), one_by_one);
        let together: Vec<i64> = lists[4].iter().flatten().copied().collect();
        assert_eq!(one_by_one[4], stats(together), "parts and one list alike");
    }

    #[test]
    fn selected_quantiles_equal_the_sorted_ones() {
        let mut seed = 7u64;
        for n in [1usize, 2, 3, 10, 99, 1000, 5_000, 70_000] {
            let values: Vec<i64> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 40) as i64 % 500
                })
                .collect();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let s = stats(values);
            let at = |percent| nearest_rank(&sorted, percent).map(seconds);
            assert_eq!((s.median, s.p90, s.p95), (at(50), at(90), at(95)), "{n} values");
        }
    }
}
