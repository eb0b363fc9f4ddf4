//! criterion benches of the dashboard's KPIs over a project of 1,000,000 orders held in the
//! query API's in-memory index: every order, and a filtered 11 % (`q=5`).
//!
//! The orders are the traffic generator's (the example settings: calendars, SLA grids, cycles),
//! each stored as the processor stores it (its row as of its latest event); a tenth are urgent.
//! Rows are computed for the first 20,000 orders and repeated under new ids, so building the
//! index takes seconds rather than minutes; ids run from 10,000 as the generator's do, so `q=5`
//! matches the same share as on the replay's database.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ksa_benches::traffic::{TrafficSpec, is_urgent, status_changes};
use ksa_domain::row::{OrderInputs, row_from_events};
use ksa_domain::{OrderOverrides, ProjectRules, Urgency};
use ksa_query_api::orders::index::ProjectIndex;
use ksa_query_api::orders::params::{Filters, IdPrefix};
use ksa_query_api::orders::select::{KPI_CHUNK, Snapshot, snapshot_kpis};
use ksa_schemas::row::UrgencySource;
use ksa_schemas::{EventSource, ProjectSettings, StatusEvent, Timestamp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ORDERS: i64 = 1_000_000;
const DISTINCT: u64 = 20_000;
const FIRST_ID: i64 = 10_000;

fn index() -> (ProjectIndex, i64) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/settings.json")).unwrap();
    let settings = ProjectSettings::from_json(&text).unwrap();
    let spec = TrafficSpec { orders: DISTINCT, ..TrafficSpec::default() };
    let mut by_order: BTreeMap<i64, Vec<StatusEvent>> = BTreeMap::new();
    for e in status_changes(&spec) {
        by_order.entry(e.order_id).or_default().push(StatusEvent {
            order_id: e.order_id,
            status_id: e.status_id,
            group_id: e.group_id,
            changed_at: e.changed_at,
            order_created_at: e.created_at,
            source: EventSource::Webhook,
        });
    }
    let latest = by_order.values().flatten().map(|e| e.changed_at.as_micros()).max().unwrap();
    // Ten days after the last change: open orders have grown past their limits.
    let as_of = latest + 10 * 86_400_000_000;
    let rules = Arc::new(ProjectRules::covering(settings, spec.start, Timestamp::from_micros(as_of)));
    let rows: Vec<_> = by_order
        .values()
        .map(|events| {
            let last = events.iter().map(|e| e.changed_at).max().unwrap();
            let (urgency, source) = if is_urgent(events[0].order_id, spec.seed) {
                (Urgency::Urgent, UrgencySource::Items)
            } else {
                (Urgency::Pending, UrgencySource::Pending)
            };
            let inputs = OrderInputs { urgency, source, overrides: OrderOverrides::default() };
            row_from_events(events, &inputs, &rules, 1, last).unwrap()
        })
        .collect();
    let mut index = ProjectIndex::new(1, 1, rules);
    for n in 0..ORDERS {
        let mut row = rows[n as usize % rows.len()].clone();
        row.order_id = FIRST_ID + n;
        index.apply(&row);
    }
    (index, as_of)
}

fn kpis(c: &mut Criterion) {
    let (index, as_of) = index();
    let past = Default::default();
    let snapshot = Snapshot::new(&index, &past, None, as_of);
    let filtered = Filters { q: Some(IdPrefix { value: 5, digits: 1 }), ..Filters::default() };
    let mut group = c.benchmark_group("kpis over 1M orders");
    group.sample_size(20);
    group.bench_function("every order", |b| b.iter(|| black_box(snapshot_kpis(&snapshot, &Filters::default(), KPI_CHUNK))));
    group.bench_function("q=5 (11 %)", |b| b.iter(|| black_box(snapshot_kpis(&snapshot, &filtered, KPI_CHUNK))));
    group.finish();
}

criterion_group!(benches, kpis);
criterion_main!(benches);
