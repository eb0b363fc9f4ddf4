//! Analytics against the offline analyzer: one generated webhook log (rework loops,
//! cancellations, reopenings, duplicates and late deliveries over the spring DST change of
//! Europe/Kyiv) goes to `run`, whose enricher fetches every order's items from a KeyCRM
//! stand-in, and to the analyzer with the same settings and items. `stages`, `cycles` and
//! `sla` must equal the statistics computed here, independently, from the analyzer's orders.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Europe::Kyiv;
use common::http::{client, get, post_webhook};
use common::keycrm;
use common::server::{Instance, Server};
use common::{Workspace, example};
use ksa_app::analyzer::{AnalyzeOptions, analyze};
use ksa_app::traffic::{TrafficSpec, deliveries, is_urgent, order_body, webhook_body};
use ksa_query_api::analytics::queries::Stat;
use ksa_schemas::Timestamp;
use serde_json::{Value, json};

const SEED: u64 = 11;
const ORDERS: u64 = 300;
/// Terminal groups of the example settings: their clock is stopped.
const TERMINAL: [i64; 2] = [5, 6];
/// Monday 2026-03-23 to Sunday 2026-04-05 in Kyiv; the clocks go forward on 2026-03-29.
const FROM: &str = "2026-03-23";
const TO: &str = "2026-04-05";

fn spec() -> TrafficSpec {
    // From Sunday noon (UTC) for 16 days: orders start before the period and after it.
    TrafficSpec { orders: ORDERS, start: Timestamp::parse("2026-03-22T12:00:00Z").unwrap(), days: 16, seed: SEED, ..TrafficSpec::default() }
}

fn order(id: i64) -> Option<Value> {
    let mut body = String::new();
    order_body(id, is_urgent(id, SEED), &mut body);
    serde_json::from_str(&body).ok()
}

/// Microseconds of a Kyiv midnight.
fn kyiv_midnight(date: NaiveDate) -> i64 {
    Kyiv.from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap()).unwrap().timestamp_micros()
}

fn micros(value: &Value) -> Option<i64> {
    value.as_str().map(|text| Timestamp::parse(text).unwrap_or_else(|| panic!("not an instant: {text}")).as_micros())
}

/// The Monday (in Kyiv) of the week holding `at`.
fn week_of(at: i64) -> String {
    let local = Kyiv.timestamp_micros(at).unwrap().date_naive();
    let monday = local - chrono::Days::new(u64::from(local.weekday().num_days_from_monday()));
    monday.format("%Y-%m-%d").to_string()
}

/// A stay in a group or status: consecutive intervals of one order in it.
#[derive(Clone, Debug)]
struct Visit {
    order: i64,
    created: i64,
    urgency: String,
    group: i64,
    status: Option<i64>,
    entered: i64,
    left: Option<i64>,
    wall: f64,
    working: f64,
}

/// The analyzer's orders as visits: per group (consecutive intervals in one group joined) and
/// per status (each interval), outside terminal groups.
fn visits(orders: &[Value], per_status: bool) -> Vec<Visit> {
    let mut out = Vec::new();
    for order in orders {
        let intervals = order["intervals"].as_array().unwrap();
        let created = intervals.iter().filter_map(|i| micros(&i["entered_at"])).min().unwrap();
        let mut current: Option<Visit> = None;
        for interval in intervals {
            let group = interval["group_id"].as_i64().unwrap();
            let status = interval["status_id"].as_i64().unwrap();
            let continues = current.as_ref().is_some_and(|v| v.group == group && !per_status);
            let (wall, working) = (interval["wall_seconds"].as_f64().unwrap(), interval["working_seconds"].as_f64().unwrap());
            let left = micros(&interval["left_at"]);
            if continues {
                let visit = current.as_mut().unwrap();
                visit.left = left;
                visit.wall += wall;
                visit.working += working;
                continue;
            }
            out.extend(current.take());
            current = Some(Visit {
                order: order["order_id"].as_i64().unwrap(),
                created,
                urgency: order["urgency"].as_str().unwrap().to_owned(),
                group,
                status: per_status.then_some(status),
                entered: micros(&interval["entered_at"]).unwrap(),
                left,
                wall,
                working,
            });
        }
        out.extend(current);
    }
    out.retain(|v| !TERMINAL.contains(&v.group));
    out
}

/// A figure of many values as the API writes it: sums to the microsecond, nearest rank.
fn stat(values: Vec<f64>) -> Value {
    serde_json::to_value(Stat::of(values.into_iter().map(|v| (v * 1e6).round() / 1e6).collect())).unwrap()
}

/// What `stages` answers for these visits: rows keyed by group (status), bucket, urgency.
fn expected_stages(visits: &[&Visit], key: &dyn Fn(&Visit) -> Value) -> (BTreeMap<String, Value>, Value) {
    let mut by_key: BTreeMap<String, (Value, Vec<&Visit>)> = BTreeMap::new();
    for visit in visits {
        let k = key(visit);
        by_key.entry(k.to_string()).or_insert_with(|| (k, Vec::new())).1.push(visit);
    }
    let figures = |of: &[&Visit]| -> Value {
        let closed: Vec<&&Visit> = of.iter().filter(|v| v.left.is_some()).collect();
        json!({
            "intervals": closed.len(),
            "orders": closed.iter().map(|v| v.order).collect::<BTreeSet<_>>().len(),
            "open": of.len() - closed.len(),
            "working_seconds": stat(closed.iter().map(|v| v.working).collect()),
            "wall_seconds": stat(closed.iter().map(|v| v.wall).collect()),
        })
    };
    let rows = by_key
        .into_values()
        .map(|(mut k, of)| {
            let f = figures(&of);
            k.as_object_mut().unwrap().extend(f.as_object().unwrap().clone());
            (key_text(&k, &["group_id", "status_id", "bucket", "urgency"]), k)
        })
        .collect();
    (rows, figures(visits))
}

fn key_text(row: &Value, names: &[&str]) -> String {
    names.iter().map(|n| row.get(*n).map_or(String::new(), Value::to_string)).collect::<Vec<_>>().join("/")
}

/// `actual` equals `expected` field by field, numbers to 1e-6 (seconds to the microsecond).
fn same(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= 1e-6,
        (Value::Object(a), Value::Object(b)) => b.iter().all(|(k, v)| a.get(k).is_some_and(|x| same(x, v))),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        _ => actual == expected,
    }
}

/// The rows of an answer keyed as [`expected_stages`] keys them.
fn keyed(rows: &Value, names: &[&str]) -> BTreeMap<String, Value> {
    rows.as_array().unwrap().iter().map(|row| (key_text(row, names), row.clone())).collect()
}

/// A difference between two keyed row sets, or `None`.
fn difference(actual: &BTreeMap<String, Value>, expected: &BTreeMap<String, Value>) -> Option<String> {
    let keys: BTreeSet<&String> = actual.keys().chain(expected.keys()).collect();
    for key in keys {
        match (actual.get(key), expected.get(key)) {
            (Some(a), Some(e)) if same(a, e) => {}
            (a, e) => return Some(format!("row {key}:\n  API:      {a:?}\n  analyzer: {e:?}")),
        }
    }
    None
}

struct Period {
    from: i64,
    to: i64,
}

impl Period {
    fn contains(&self, at: i64) -> bool {
        self.from <= at && at < self.to
    }
}

/// Every comparison; the first difference, or `None` when the API agrees with the analyzer.
async fn compare(http: &reqwest::Client, server: &Server, orders: &[Value], period: &Period) -> Option<String> {
    let ask = |query: &str, params: &str| {
        let url = format!("{}/api/analytics/{query}?project=shop&from={FROM}&to={TO}&{params}", server.base_url);
        async move {
            let reply = get(http, &url).await;
            assert_eq!(reply.status, 200, "{url}: {reply:?}");
            reply.body
        }
    };
    let groups = visits(orders, false);
    let statuses = visits(orders, true);

    // stages, by creation, per group: every visit of the orders created in the period.
    let created: Vec<&Visit> = groups.iter().filter(|v| period.contains(v.created)).collect();
    let (rows, total) = expected_stages(&created, &|v| json!({"group_id": v.group}));
    let answer = ask("stages", "").await;
    if let Some(diff) = difference(&keyed(&answer["rows"], &["group_id", "status_id", "bucket", "urgency"]), &rows) {
        return Some(format!("stages by=created: {diff}"));
    }
    if !same(&answer["total"], &total) {
        return Some(format!("stages by=created total: API {} analyzer {total}", answer["total"]));
    }

    // stages per status, by entry, in weeks (the DST week among them), split by urgency.
    let entered: Vec<&Visit> = statuses.iter().filter(|v| period.contains(v.entered)).collect();
    let (rows, _) = expected_stages(
        &entered,
        &|v| json!({"group_id": v.group, "status_id": v.status, "bucket": week_of(v.entered), "urgency": v.urgency}),
    );
    let answer = ask("stages", "by=entered&per=status&bucket=week&urgency=split").await;
    if let Some(diff) = difference(&keyed(&answer["rows"], &["group_id", "status_id", "bucket", "urgency"]), &rows) {
        return Some(format!("stages by=entered per=status bucket=week urgency=split: {diff}"));
    }

    // stages per group, by entry, in days: a visit belongs to the day it began.
    let entered: Vec<&Visit> = groups.iter().filter(|v| period.contains(v.entered)).collect();
    let day = |at: i64| Kyiv.timestamp_micros(at).unwrap().date_naive().format("%Y-%m-%d").to_string();
    let (rows, _) = expected_stages(&entered, &|v| json!({"group_id": v.group, "bucket": day(v.entered)}));
    let answer = ask("stages", "by=entered&bucket=day").await;
    if let Some(diff) = difference(&keyed(&answer["rows"], &["group_id", "status_id", "bucket", "urgency"]), &rows) {
        return Some(format!("stages by=entered bucket=day: {diff}"));
    }

    // cycles, by creation: completed ones measured, open ones counted.
    let mut cycles: BTreeMap<String, (Value, Vec<f64>, Vec<f64>, usize)> = BTreeMap::new();
    for order in orders {
        let created = order["intervals"].as_array().unwrap().iter().filter_map(|i| micros(&i["entered_at"])).min().unwrap();
        if !period.contains(created) {
            continue;
        }
        for (id, cycle) in order["cycles"].as_object().unwrap() {
            let id: i64 = id.parse().unwrap();
            let entry = cycles
                .entry(key_text(&json!({"cycle_id": id}), &["cycle_id"]))
                .or_insert_with(|| (json!({"cycle_id": id}), Vec::new(), Vec::new(), 0));
            if cycle["open"] == true {
                entry.3 += 1;
            } else {
                entry.1.push(cycle["working_seconds"].as_f64().unwrap());
                entry.2.push(cycle["wall_seconds"].as_f64().unwrap());
            }
        }
    }
    let rows: BTreeMap<String, Value> = cycles
        .into_iter()
        .map(|(key, (mut row, working, wall, open))| {
            let fields = json!({"completed": working.len(), "open": open, "working_seconds": stat(working), "wall_seconds": stat(wall)});
            row.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
            (key, row)
        })
        .collect();
    let answer = ask("cycles", "").await;
    if let Some(diff) = difference(&keyed(&answer["rows"], &["cycle_id"]), &rows) {
        return Some(format!("cycles by=created: {diff}"));
    }

    // sla, per group and week: orders whose time in the group settled in the period, by the
    // group's final state.
    let mut settled: BTreeMap<String, Value> = BTreeMap::new();
    for order in orders {
        let id = order["order_id"].as_i64().unwrap();
        for (group, total) in order["groups"].as_object().unwrap() {
            let group: i64 = group.parse().unwrap();
            let mine: Vec<&Visit> = groups.iter().filter(|v| v.order == id && v.group == group).collect();
            let (Some(last), false) = (mine.iter().filter_map(|v| v.left).max(), mine.iter().any(|v| v.left.is_none())) else {
                continue;
            };
            if !period.contains(last) {
                continue;
            }
            let key = json!({"group_id": group, "bucket": week_of(last)});
            let row = settled.entry(key_text(&key, &["group_id", "bucket"])).or_insert_with(|| {
                let mut row = key.clone();
                row.as_object_mut()
                    .unwrap()
                    .extend([("orders", 0), ("ok", 0), ("near", 0), ("over", 0)].map(|(k, v)| (k.to_owned(), json!(v))));
                row
            });
            row["orders"] = (row["orders"].as_i64().unwrap() + 1).into();
            let state = total["sla"].as_str().unwrap();
            if state != "none" {
                row[state] = (row[state].as_i64().unwrap() + 1).into();
            }
        }
    }
    let answer = ask("sla", "bucket=week").await;
    if let Some(diff) = difference(&keyed(&answer["rows"], &["group_id", "bucket"]), &settled) {
        return Some(format!("sla bucket=week: {diff}"));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_cycles_and_sla_equal_the_analyzers_figures() {
    let keycrm = keycrm::start(order);
    let instance = Instance::sqlite();
    let project = instance.add_project("shop", &[]);
    keycrm::connect_with_example_settings(&instance, "shop", &keycrm);
    // Every order's items at once, not at KeyCRM's pace.
    let server = instance.start_with(&[("KSA__ENRICHER__BURST", "1000")]);
    let http = client();

    let work = Workspace::new();
    let mut log = String::new();
    let traffic = deliveries(&spec());
    for event in &traffic {
        let mut body = String::new();
        webhook_body(event, &mut body);
        let reply = post_webhook(&http, &server.webhook_url(&project), body.clone()).await;
        assert!(reply.status == 202 && ["accepted", "duplicate"].contains(&reply.outcome()), "{reply:?}");
        log.push_str(&body);
        log.push('\n');
    }
    let ids: BTreeSet<i64> = traffic.iter().map(|e| e.order_id).collect();
    let mut items = String::new();
    for id in &ids {
        order_body(*id, is_urgent(*id, SEED), &mut items);
        items.push('\n');
    }
    let events = work.write("events.jsonl", &log);
    let output = work.path("orders.out.jsonl");
    let options = AnalyzeOptions {
        events,
        settings: Some(example("settings.json")),
        orders: Some(work.write("orders.jsonl", &items)),
        output: Some(output.clone()),
        now: Timestamp::from_datetime(chrono::Utc::now()),
        chunk_events: AnalyzeOptions::DEFAULT_CHUNK_EVENTS,
        progress: false,
    };
    let summary = analyze(&options, &mut std::io::sink()).expect("the analyzer runs");
    assert_eq!((summary.rejected_lines, summary.orders_written), (0, ORDERS), "{summary:?}");
    let orders: Vec<Value> = std::fs::read_to_string(&output).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let urgent = orders.iter().filter(|o| o["urgency"] == "urgent").count();
    assert!(urgent > 10 && urgent < 100, "about one order in ten is urgent: {urgent}");
    let reworked = visits(&orders, false).iter().filter(|v| v.group == 2).count() > orders.len();
    assert!(reworked, "some orders visit group 2 twice");

    let period = Period {
        from: kyiv_midnight(NaiveDate::parse_from_str(FROM, "%Y-%m-%d").unwrap()),
        to: kyiv_midnight(NaiveDate::parse_from_str(TO, "%Y-%m-%d").unwrap().succ_opt().unwrap()),
    };
    assert!(orders.iter().any(|o| micros(&o["started_at"]).unwrap() < period.from), "an order begins before the period");
    // The server takes a moment: items are fetched, orders derived again, facts written.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let Some(diff) = compare(&http, &server, &orders, &period).await else { break };
        assert!(Instant::now() < deadline, "the API disagrees with the analyzer: {diff}\n{}", server.stderr());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
