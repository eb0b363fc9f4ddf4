//! Lists, sorts, paging and KPIs of the orders index against the analyzer's computation: for a
//! generated log, the orders index built from the rows the processor stores (each as of its
//! order's latest event) answers every filter, sort and KPI exactly as the timelines computed
//! at `as_of` from the events do, at random instants and at instants just before and after
//! SLA crossings, and at instants before some orders' latest events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use ksa_domain::row::{OrderInputs, order_row, row_from_events};
use ksa_domain::{OrderOverrides, ProjectRules, Urgency, compute_timeline};
use ksa_query_api::orders::index::{Clocks, Entry, ProjectIndex};
use ksa_query_api::orders::params::{Filters, IdPrefix, Position, Range, Sort, SortKey};
use ksa_query_api::orders::select::{self, Snapshot, nearest_rank};
use ksa_schemas::row::{OrderRow, RowSla, UrgencySource};
use ksa_schemas::settings::{CalendarSpec, Calendars, NearThreshold, Window};
use ksa_schemas::{EventSource, ProjectSettings, StatusEvent, Timestamp};
use proptest::prelude::*;

/// 2026-01-05T00:00:00Z, a Monday.
const BASE: i64 = 1_767_571_200_000_000;
const MINUTE: i64 = 60_000_000;
const DAY: i64 = 86_400_000_000;

fn rules() -> ProjectRules {
    let mut groups = BTreeMap::new();
    groups.insert(
        3,
        CalendarSpec { weekly: std::array::from_fn(|_| vec![Window::parse("22:00-06:00").unwrap()]), exceptions: BTreeMap::new() },
    );
    groups.insert(2, CalendarSpec::always_open());
    let mut settings = ProjectSettings {
        timezone: "Europe/Kyiv".parse().unwrap(),
        calendars: Calendars { default: CalendarSpec::office_hours(), groups },
        ..ProjectSettings::default()
    };
    settings.sla.near = NearThreshold::Percent(70.0);
    for (group, hours) in [(1u16, 2i64), (2, 5), (3, 3), (4, 30)] {
        settings.sla.normal.groups.insert(group, hours * 3600);
        settings.sla.urgent.groups.insert(group, hours * 1200);
    }
    settings.sla.normal.statuses.insert(21, 3600);
    settings.sla.normal.statuses.insert(30, 7200);
    ProjectRules::new(settings, NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 4, 1).unwrap())
}

#[derive(Clone, Debug)]
struct Order {
    id: i64,
    events: Vec<StatusEvent>,
    urgency: Urgency,
}

fn order(id: i64) -> impl Strategy<Value = Order> {
    let event = (1u16..=6, 0i64..3, 0i64..6 * 24 * 4).prop_map(move |(group, status, quarter)| StatusEvent {
        order_id: id,
        status_id: i64::from(group) * 10 + status,
        group_id: group,
        changed_at: Timestamp::from_micros(BASE + quarter * 15 * MINUTE),
        order_created_at: Timestamp::from_micros(BASE - id * 7 * MINUTE),
        source: EventSource::Webhook,
    });
    let urgency = prop::sample::select(vec![Urgency::Pending, Urgency::Normal, Urgency::Urgent]);
    (prop::collection::vec(event, 1..7), urgency).prop_map(move |(events, urgency)| Order { id, events, urgency })
}

fn orders() -> impl Strategy<Value = Vec<Order>> {
    (1usize..30).prop_flat_map(|n| (0..n).map(|i| order(100 + i as i64 * 7)).collect::<Vec<_>>())
}

fn inputs(order: &Order) -> OrderInputs {
    let source = match order.urgency {
        Urgency::Pending => UrgencySource::Pending,
        _ => UrgencySource::Items,
    };
    OrderInputs { urgency: order.urgency, source, overrides: OrderOverrides::default() }
}

/// What the processor stores: the row as of the order's latest event.
fn stored(order: &Order, rules: &ProjectRules) -> OrderRow {
    let latest = order.events.iter().map(|e| e.changed_at).max().unwrap();
    row_from_events(&order.events, &inputs(order), rules, 1, latest).unwrap()
}

/// The analyzer's answer: the order's timeline computed at `as_of`, as a row.
fn analyzed(order: &Order, rules: &ProjectRules, as_of: Timestamp) -> Option<OrderRow> {
    let inputs = inputs(order);
    let timeline = compute_timeline(&order.events, inputs.urgency, &inputs.overrides, rules, as_of)?;
    Some(order_row(&timeline, rules, inputs.source.clone(), 1))
}

/// The index the query API would hold, and the entries of orders that changed after `as_of`,
/// measured then (what a listing pinned at `as_of` computes).
fn index_at(orders: &[Order], rules: &Arc<ProjectRules>, as_of: Timestamp) -> (ProjectIndex, HashMap<i64, Entry>) {
    let mut index = ProjectIndex::new(1, 1, rules.clone());
    let mut past = HashMap::new();
    for order in orders {
        let row = stored(order, rules);
        index.apply(&row);
        if row.last_changed_at > as_of
            && let Some(then) = row_from_events(&order.events, &inputs(order), rules, 1, as_of)
        {
            past.insert(order.id, Entry::from_row(&then, rules));
        }
    }
    (index, past)
}

fn current_group_sla(row: &OrderRow) -> RowSla {
    row.groups.get(&row.current_group_id).map_or(RowSla::None, |g| g.sla)
}

/// The filter table: each filter with the predicate it means, on the analyzer's row.
/// A named filter and what it means on the analyzer's row.
type Case = (String, Filters, Box<dyn Fn(&OrderRow) -> bool>);

fn table(rows: &[OrderRow], salt: usize) -> Vec<Case> {
    let mut table: Vec<Case> = vec![("none".into(), Filters::default(), Box::new(|_| true))];
    for sla in [RowSla::None, RowSla::Ok, RowSla::Near, RowSla::Over] {
        table.push((format!("sla={sla:?}"), Filters { sla: Some(sla), ..Filters::default() }, Box::new(move |r| r.sla == sla)));
    }
    table.push((
        "overdue".into(),
        Filters { overdue: true, ..Filters::default() },
        Box::new(|r| r.open && current_group_sla(r) == RowSla::Over),
    ));
    for open in [true, false] {
        table.push((format!("open={open}"), Filters { open: Some(open), ..Filters::default() }, Box::new(move |r| r.open == open)));
    }
    for (rank, name) in [(0u8, "pending"), (1, "normal"), (2, "urgent")] {
        table.push((
            format!("urgency={name}"),
            Filters { urgency: Some(rank), ..Filters::default() },
            Box::new(move |r| r.urgency == name),
        ));
    }
    for group in 1u16..=6 {
        table.push((
            format!("group={group}"),
            Filters { groups: Some(vec![group]), ..Filters::default() },
            Box::new(move |r| r.current_group_id == group),
        ));
    }
    table.push((
        "group=3&urgency=urgent".into(),
        Filters { groups: Some(vec![3]), urgency: Some(2), ..Filters::default() },
        Box::new(|r| r.current_group_id == 3 && r.urgency == "urgent"),
    ));
    table.push((
        "group=2,5&open=true".into(),
        Filters { groups: Some(vec![2, 5]), open: Some(true), ..Filters::default() },
        Box::new(|r| [2, 5].contains(&r.current_group_id) && r.open),
    ));
    table.push((
        "group=5,1,5".into(),
        Filters { groups: Some(vec![5, 1, 5]), ..Filters::default() },
        Box::new(|r| [1, 5].contains(&r.current_group_id)),
    ));
    table.push((
        "sla=over&open=true".into(),
        Filters { sla: Some(RowSla::Over), open: Some(true), ..Filters::default() },
        Box::new(|r| r.sla == RowSla::Over && r.open),
    ));
    for status in [21i64, 30, 40] {
        table.push((
            format!("status={status}"),
            Filters { statuses: Some(vec![status]), ..Filters::default() },
            Box::new(move |r| r.current_status_id == status),
        ));
    }
    for cycle in [1u32, 2] {
        table.push((
            format!("cycle={cycle}"),
            Filters { cycle: Some(cycle), ..Filters::default() },
            Box::new(move |r| r.cycles.contains_key(&cycle)),
        ));
        for open in [true, false] {
            table.push((
                format!("cycle={cycle}&cycle_state={open}"),
                Filters { cycle: Some(cycle), cycle_open: Some(open), ..Filters::default() },
                Box::new(move |r| r.cycles.get(&cycle).is_some_and(|c| c.open == open)),
            ));
        }
    }
    if !rows.is_empty() {
        let pivot = &rows[salt % rows.len()];
        let (created, changed) = (pivot.started_at.as_micros(), pivot.last_changed_at.as_micros());
        table.push((
            "created_from".into(),
            Filters { created: Range { from: Some(created), to: None }, ..Filters::default() },
            Box::new(move |r| r.started_at.as_micros() >= created),
        ));
        table.push((
            "changed_to".into(),
            Filters { changed: Range { from: None, to: Some(changed) }, ..Filters::default() },
            Box::new(move |r| r.last_changed_at.as_micros() < changed),
        ));
        let digits = pivot.order_id.to_string();
        let prefix = &digits[..digits.len().min(1 + salt % 3)];
        let q = IdPrefix { value: prefix.parse().unwrap(), digits: prefix.len() as u32 };
        let text = prefix.to_owned();
        table.push((
            format!("q={prefix}"),
            Filters { q: Some(q), ..Filters::default() },
            Box::new(move |r| r.order_id.to_string().starts_with(&text)),
        ));
    }
    table
}

fn sort_value(row: &OrderRow, key: SortKey, cycle: Option<u32>) -> i64 {
    match (key, cycle) {
        (SortKey::Working, Some(c)) => row.cycles.get(&c).map_or(0, |c| c.working_micros),
        (SortKey::Wall, Some(c)) => row.cycles.get(&c).map_or(0, |c| c.wall_micros),
        (SortKey::Working, None) => row.working_micros,
        (SortKey::Wall, None) => row.wall_micros,
        (SortKey::Created, _) => row.started_at.as_micros(),
        (SortKey::Changed, _) => row.last_changed_at.as_micros(),
        (SortKey::Id, _) => row.order_id,
    }
}

const SORTS: [SortKey; 5] = [SortKey::Working, SortKey::Wall, SortKey::Created, SortKey::Changed, SortKey::Id];

/// Instants to test at: the latest event plus some time, before some orders' latest events,
/// and just around crossings of the stored rows.
fn instants(rows: &[OrderRow], pick: usize, later: i64) -> Vec<Timestamp> {
    let latest = rows.iter().map(|r| r.last_changed_at.as_micros()).max().unwrap_or(BASE);
    let earliest = rows.iter().map(|r| r.first_event_at.as_micros()).min().unwrap_or(BASE);
    let mut out =
        vec![Timestamp::from_micros(latest + later), Timestamp::from_micros(earliest + (latest - earliest) * (pick % 7) as i64 / 7)];
    let crossings: Vec<i64> = rows
        .iter()
        .flat_map(|r| [r.crossings.group_near_at, r.crossings.group_over_at, r.crossings.status_near_at, r.crossings.status_over_at])
        .flatten()
        .map(Timestamp::as_micros)
        .collect();
    if !crossings.is_empty() {
        let at = crossings[pick % crossings.len()];
        out.extend([at - 1, at, at + 1].map(Timestamp::from_micros));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn filters_sorts_pages_and_kpis_equal_the_analyzers(orders in orders(), pick in 0usize..1000, later in 0i64..(4 * DAY)) {
        let rules = Arc::new(rules());
        let stored_rows: Vec<OrderRow> = orders.iter().map(|o| stored(o, &rules)).collect();
        for as_of in instants(&stored_rows, pick, later) {
            let (index, past) = index_at(&orders, &rules, as_of);
            let snapshot = Snapshot::new(&index, &past, None, as_of.as_micros());
            let walking = Snapshot { few: 0, ..Snapshot::new(&index, &past, None, as_of.as_micros()) };
            let expected: Vec<OrderRow> = orders.iter().filter_map(|o| analyzed(o, &rules, as_of)).collect();
            for (name, filters, predicate) in table(&expected, pick) {
                let matching: Vec<&OrderRow> = expected.iter().filter(|r| predicate(r)).collect();
                for key in SORTS {
                    for descending in [false, true] {
                        let sort = Sort { key, descending };
                        let mut wanted: Vec<(i64, i64)> = matching.iter().map(|r| (sort_value(r, key, filters.cycle), r.order_id)).collect();
                        wanted.sort();
                        if descending {
                            wanted.reverse();
                        }
                        let mut clocks = Clocks::new(&rules, as_of);
                        let listed: Vec<(i64, i64)> = select::page(&snapshot, &mut clocks, &filters, sort, None, usize::MAX)
                            .into_iter()
                            .map(|(_, p)| (p.value, p.order_id))
                            .collect();
                        prop_assert_eq!(&listed, &wanted, "{} sorted by {} at {}", name, sort.name(), as_of);
                        if filters.overdue || filters.q.is_some() {
                            // The same by walking the index, as when many orders are overdue or
                            // have ids that begin so.
                            let walked: Vec<(i64, i64)> = select::page(&walking, &mut clocks, &filters, sort, None, usize::MAX)
                                .into_iter()
                                .map(|(_, p)| (p.value, p.order_id))
                                .collect();
                            prop_assert_eq!(&walked, &wanted, "{} sorted by {} at {}, walking", name, sort.name(), as_of);
                        }
                        // Pages of 3 from cursor to cursor give the same listing.
                        let mut paged = Vec::new();
                        let mut after: Option<Position> = None;
                        loop {
                            let page = select::page(&snapshot, &mut clocks, &filters, sort, after, 3);
                            paged.extend(page.iter().map(|(_, p)| (p.value, p.order_id)));
                            match page.last() {
                                Some((_, p)) if page.len() == 3 => after = Some(*p),
                                _ => break,
                            }
                        }
                        prop_assert_eq!(&paged, &wanted, "{} paged by {} at {}", name, sort.name(), as_of);
                    }
                }
                let mut clocks = Clocks::new(&rules, as_of);
                let kpis = select::kpis(snapshot.entries(), &mut clocks, &filters);
                // The same, the index split among threads.
                prop_assert_eq!(&select::snapshot_kpis(&snapshot, &filters, 1), &kpis, "{} on threads", name);
                prop_assert_eq!(&select::snapshot_kpis(&walking, &filters, 1), &kpis, "{} walking the index", name);
                prop_assert_eq!(kpis.count, matching.len() as u64, "{}", name);
                prop_assert_eq!(kpis.urgent, matching.iter().filter(|r| r.urgency == "urgent").count() as u64);
                prop_assert_eq!(kpis.pending, matching.iter().filter(|r| r.urgency == "pending").count() as u64);
                prop_assert_eq!(kpis.sla.over, matching.iter().filter(|r| r.sla == RowSla::Over).count() as u64);
                prop_assert_eq!(kpis.sla.near, matching.iter().filter(|r| r.sla == RowSla::Near).count() as u64);
                prop_assert_eq!(kpis.sla.overdue, matching.iter().filter(|r| r.open && current_group_sla(r) == RowSla::Over).count() as u64);
                for group in 1u16..=6 {
                    let mut working: Vec<i64> = matching.iter().filter_map(|r| r.groups.get(&group).filter(|g| g.visits > 0)).map(|g| g.working_micros).collect();
                    working.sort_unstable();
                    let got = kpis.groups.get(&group);
                    prop_assert_eq!(got.map_or(0, |g| g.orders), working.len() as u64, "{} group {}", name, group);
                    if let Some(got) = got {
                        let seconds = |q| nearest_rank(&working, q).map(|v| v as f64 / 1e6);
                        prop_assert_eq!((got.working_seconds.median, got.working_seconds.p90, got.working_seconds.p95), (seconds(50), seconds(90), seconds(95)));
                        prop_assert_eq!(got.working_seconds.sum, working.iter().sum::<i64>() as f64 / 1e6);
                    }
                }
                for cycle in [1u32, 2] {
                    let mut done: Vec<i64> = matching.iter().filter_map(|r| r.cycles.get(&cycle).filter(|c| !c.open)).map(|c| c.working_micros).collect();
                    done.sort_unstable();
                    let got = kpis.cycles.get(&cycle);
                    prop_assert_eq!(got.map_or(0, |c| c.completed), done.len() as u64, "{} cycle {}", name, cycle);
                    if let Some(got) = got {
                        prop_assert_eq!(got.working_seconds.p90, nearest_rank(&done, 90).map(|v| v as f64 / 1e6));
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// A listing keeps seeing the index as it stood at its first page: orders that change or
    /// are added afterwards (a late event, a new order) do not move between its pages.
    #[test]
    fn a_listing_sees_the_index_as_it_stood_at_its_first_page(
        orders in orders(),
        later in orders(),
        pick in 0usize..1000,
    ) {
        let rules = Arc::new(rules());
        let latest = orders.iter().flat_map(|o| o.events.iter().map(|e| e.changed_at.as_micros())).max().unwrap_or(BASE);
        let as_of = Timestamp::from_micros(latest + (pick as i64 % 5) * DAY);
        let (mut index, past) = index_at(&orders, &rules, as_of);
        let version = index.version();
        let listing = |index: &ProjectIndex, since| -> Vec<(String, Vec<i64>)> {
            let snapshot = Snapshot::new(index, &past, since, as_of.as_micros());
            let mut clocks = Clocks::new(&rules, as_of);
            let kpis = select::kpis(snapshot.entries(), &mut clocks, &Filters::default());
            assert_eq!(select::snapshot_kpis(&snapshot, &Filters::default(), 1), kpis, "KPIs on threads, the pinned orders included");
            let mut out = Vec::new();
            for key in SORTS {
                for descending in [false, true] {
                    let sort = Sort { key, descending };
                    let mut clocks = Clocks::new(&rules, as_of);
                    let ids = select::page(&snapshot, &mut clocks, &Filters::default(), sort, None, usize::MAX).into_iter().map(|(e, _)| e.order_id).collect();
                    out.push((sort.name(), ids));
                }
            }
            out
        };
        let before = listing(&index, Some(version));
        // Later: the same ids with other histories (events before `as_of` among them), and
        // orders the first page never saw.
        for order in later.iter().chain(orders.iter().map(|o| Order { id: o.id + 1_000_000, ..o.clone() }).collect::<Vec<_>>().iter()) {
            let mut row = stored(order, &rules);
            row.event_count += 100;
            index.apply(&row);
            // And again: an order changed twice is still seen as it was before the first.
            row.event_count += 100;
            index.apply(&row);
        }
        prop_assert_eq!(listing(&index, Some(version)), before);
        prop_assert!(index.as_it_was(version).is_some());
        let foreign = ProjectIndex::new(1, 1, rules.clone());
        prop_assert!(foreign.as_it_was(version).is_none(), "another index's version is not this one's");
    }
}
