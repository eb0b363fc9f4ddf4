//! `keycrm-analytics timeline` run as a user runs it, on the demo in `examples/` and on files
//! made to go wrong.

mod common;

use common::{EXAMPLES_NOW, Workspace, example, example_text, timeline_args};
use serde_json::Value;

const EXAMPLE_ORDERS: [i64; 8] = [23101, 23102, 23103, 23104, 23105, 23106, 23107, 23108];
const SLA_STATES: [&str; 4] = ["none", "ok", "near", "over"];

fn examples_output() -> Vec<Value> {
    let ws = Workspace::new();
    let outcome = ws.run(timeline_args(&example("events.jsonl"), EXAMPLES_NOW, &[]));
    outcome.assert_success();
    outcome.json_lines()
}

fn order(lines: &[Value], id: i64) -> &Value {
    lines.iter().find(|l| l["order_id"] == id).unwrap_or_else(|| panic!("order {id} is not in the output"))
}

/// A number of the output, addressed by JSON pointer.
fn number(value: &Value, pointer: &str) -> f64 {
    value.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{pointer} is not a number in {value}"))
}

fn assert_numbers(value: &Value, expected: &[(&str, f64)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(pointer, want)| value.pointer(pointer).and_then(Value::as_f64) != Some(*want))
        .map(|(pointer, want)| format!("{pointer}: want {want}, got {:?}", value.pointer(pointer)))
        .collect();
    assert!(wrong.is_empty(), "order {}:\n{}", value["order_id"], wrong.join("\n"));
}

fn status_path(timeline: &Value) -> Vec<i64> {
    timeline["intervals"].as_array().expect("intervals").iter().map(|i| i["status_id"].as_i64().expect("status_id")).collect()
}

#[test]
fn examples_give_one_line_per_order_sorted_by_id_with_every_documented_field() {
    let lines = examples_output();
    let ids: Vec<i64> = lines.iter().map(|l| l["order_id"].as_i64().expect("order_id")).collect();
    assert_eq!(ids, EXAMPLE_ORDERS);

    for line in &lines {
        let id = &line["order_id"];
        assert!(line["started_at"].is_string(), "{id}: started_at");
        assert!(line["untracked_seconds"].as_f64().is_some_and(|s| s >= 0.0), "{id}: untracked_seconds");
        let intervals = line["intervals"].as_array().expect("intervals");
        assert!(!intervals.is_empty(), "{id}: intervals");
        for (i, interval) in intervals.iter().enumerate() {
            assert!(interval["status_id"].is_i64() && interval["group_id"].is_i64(), "{id}: interval {i} ids");
            assert!(interval["entered_at"].is_string(), "{id}: interval {i} entered_at");
            let last = i + 1 == intervals.len();
            assert_eq!(interval["left_at"].is_null(), last, "{id}: only the last interval is open");
            if !last {
                assert_eq!(interval["left_at"], intervals[i + 1]["entered_at"], "{id}: interval {i} ends where the next begins");
            }
            let (wall, working) = (number(interval, "/wall_seconds"), number(interval, "/working_seconds"));
            assert!(0.0 <= working && working <= wall, "{id}: interval {i}: 0 ≤ working ≤ wall");
        }
        let groups = line["groups"].as_object().expect("groups");
        assert!(!groups.contains_key("5") && !groups.contains_key("6"), "{id}: terminal groups have no totals: {groups:?}");
        for (group, total) in groups {
            assert!(group.parse::<u16>().is_ok(), "{id}: group key {group}");
            assert!(total["wall_seconds"].is_f64() && total["working_seconds"].is_f64(), "{id}: group {group} times");
            assert!(total["visits"].as_u64().is_some_and(|v| v >= 1), "{id}: group {group} visits");
            assert!(SLA_STATES.contains(&total["sla"].as_str().unwrap_or("")), "{id}: group {group} sla");
        }
        let cycles = line["cycles"].as_object().expect("cycles");
        assert!(!cycles.is_empty(), "{id}: every order has its cycles from creation");
        for (cycle, result) in cycles {
            assert!(result["wall_seconds"].is_f64() && result["working_seconds"].is_f64(), "{id}: cycle {cycle} times");
            assert!(result["open"].is_boolean(), "{id}: cycle {cycle} open");
        }
        assert!(SLA_STATES.contains(&line["sla"].as_str().unwrap_or("")), "{id}: sla");
    }

    let urgency: Vec<(i64, &str)> =
        lines.iter().map(|l| (l["order_id"].as_i64().unwrap_or(0), l["urgency"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        urgency,
        [
            (23101, "pending"),
            (23102, "normal"),
            (23103, "urgent"),
            (23104, "normal"),
            (23105, "pending"),
            (23106, "normal"),
            (23107, "pending"),
            (23108, "pending"),
        ],
        "orders.jsonl holds 23102, 23103 (urgent), 23104 and 23106; the others have no items yet"
    );
    assert_eq!(order(&lines, 23103)["sla_profile"], "urgent");
    assert_eq!(order(&lines, 23105)["sla_profile"], "normal", "a pending order is measured by the normal grid");
}

#[test]
fn examples_summary_counts_status_changes_ignored_events_and_order_lines() {
    let ws = Workspace::new();
    let outcome = ws.run(timeline_args(&example("events.jsonl"), EXAMPLES_NOW, &[]));
    outcome.assert_success();
    assert!(
        outcome
            .stderr
            .contains("read 45 event lines (44 status changes, 1 other events ignored, 0 rejected) and 4 order lines; wrote 8 orders"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn duplicates_late_lines_rework_cancellation_and_reopening_show_in_the_timelines() {
    let lines = examples_output();

    let canceled = order(&lines, 23101);
    assert_eq!(status_path(canceled), [1, 20, 19]);
    assert_eq!(canceled["current_group_id"], 6);
    assert_eq!(canceled["closed_at"], "2026-01-05T08:30:00Z");
    assert_eq!(canceled["cycles"]["2"]["open"], true, "a canceled order never completes its full cycle");

    let rework = order(&lines, 23102);
    assert_eq!(status_path(rework), [1, 20, 7, 21, 7, 8, 11, 12]);
    assert_eq!(rework["groups"]["2"]["visits"], 2);
    assert_eq!(rework["groups"]["3"]["visits"], 2);
    assert_eq!(rework["statuses"]["7"]["visits"], 2);

    let duplicated = order(&lines, 23103);
    assert_eq!(status_path(duplicated), [1, 20, 7, 8, 11, 12]);
    assert_eq!(duplicated["event_count"], 6, "the twice-delivered webhook counts once");

    let reopened = order(&lines, 23104);
    assert_eq!(status_path(reopened), [1, 20, 7, 11, 12, 11, 12]);
    assert_eq!(reopened["groups"]["4"]["visits"], 2);
    assert_eq!(reopened["cycles"]["2"]["ended_at"], "2026-02-09T09:00:00Z", "the full cycle ends at the first completion");
    assert_eq!(reopened["closed_at"], "2026-02-12T13:45:00Z", "closed again by the second completion");

    let late = order(&lines, 23105);
    assert_eq!(status_path(late), [1, 20, 21, 7, 8, 11, 12], "the status 21 line comes last in the file");
    assert_eq!(late["event_count"], 7, "the payment-status event is not a status change");

    let open = order(&lines, 23108);
    assert_eq!(open["current_status_id"], 20);
    assert_eq!(open["cycles"]["2"]["open"], true);
    assert!(open["cycles"]["2"].get("ended_at").is_none());
}

/// Europe/Kyiv is UTC+2 until 2026-03-29 01:00 UTC. Office calendar Mon–Fri 09:00–18:00 local,
/// production (group 3) Mon–Sat 08:00–20:00 + 20:00–08:00 (so from Monday 08:00 to Sunday
/// 08:00 non-stop), 2026-03-09 (Monday) a holiday in both.
#[test]
fn order_across_a_weekend_and_a_holiday_has_hand_computed_times() {
    let lines = examples_output();
    let o = order(&lines, 23106);
    // created Thu 03-05 09:40 local; events, local time: 1 Thu 10:00, 20 Thu 14:30, 7 Fri 11:00,
    // 8 Sat 12:00, 11 Tue 03-10 15:00, 12 Wed 03-11 12:00.
    assert_eq!(o["started_at"], "2026-03-05T07:40:00Z");
    assert_numbers(
        o,
        &[
            // 09:40 → 10:00
            ("/untracked_seconds", 1200.0),
            // group 1, Thu 10:00 → 14:30: 4.5 h, all in office hours
            ("/groups/1/wall_seconds", 16200.0),
            ("/groups/1/working_seconds", 16200.0),
            // group 2, Thu 14:30 → Fri 11:00: 20.5 h; working 14:30–18:00 (3.5 h) + 09:00–11:00 (2 h) = 5.5 h
            ("/groups/2/wall_seconds", 73800.0),
            ("/groups/2/working_seconds", 19800.0),
            // group 3, status 7, Fri 11:00 → Sat 12:00: 25 h, all production time
            ("/intervals/2/wall_seconds", 90000.0),
            ("/intervals/2/working_seconds", 90000.0),
            // status 8, Sat 12:00 → Tue 15:00: 75 h; working Sat 12:00 → Sun 08:00 (20 h), Sunday off,
            // Monday holiday, Tue 08:00 → 15:00 (7 h) = 27 h
            ("/intervals/3/wall_seconds", 270000.0),
            ("/intervals/3/working_seconds", 97200.0),
            // one visit to group 3: 25 + 75 = 100 h wall, 25 + 27 = 52 h working
            ("/groups/3/wall_seconds", 360000.0),
            ("/groups/3/working_seconds", 187200.0),
            ("/groups/3/visits", 1.0),
            // group 4, Tue 15:00 → Wed 12:00: 21 h; working 15:00–18:00 + 09:00–12:00 = 6 h
            ("/groups/4/wall_seconds", 75600.0),
            ("/groups/4/working_seconds", 21600.0),
            // to delivery, Thu 09:40 → Tue 15:00: 125 h 20 min; working 1200 (lead-in, office
            // calendar) + 16200 + 19800 + 187200 = 224400
            ("/cycles/1/wall_seconds", 451200.0),
            ("/cycles/1/working_seconds", 224400.0),
            // full cycle, Thu 09:40 → Wed 12:00: 451200 + 75600; working 224400 + 21600
            ("/cycles/2/wall_seconds", 526800.0),
            ("/cycles/2/working_seconds", 246000.0),
            // production, first entry into 3 → first into 4: group 3's own totals
            ("/cycles/3/wall_seconds", 360000.0),
            ("/cycles/3/working_seconds", 187200.0),
        ],
    );
    // normal grid: 1 → 16200 / 28800 ok, 2 → 19800 / 28800 ok, 3 → 187200 / 216000 = 87 % near
    // (≥ 80 %), 4 → 21600 / 57600 ok; the order is as bad as its worst group
    let states: Vec<&str> = ["1", "2", "3", "4"].iter().map(|g| o["groups"][g]["sla"].as_str().unwrap_or("")).collect();
    assert_eq!(states, ["ok", "ok", "near", "ok"]);
    assert_eq!(o["sla"], "near");
    assert!(o["cycles"].as_object().expect("cycles").values().all(|c| c["open"] == false));
}

/// Kyiv moves from UTC+2 to UTC+3 at 2026-03-29 01:00 UTC (03:00 → 04:00 local, a Sunday).
#[test]
fn order_across_the_spring_dst_change_has_hand_computed_times() {
    let lines = examples_output();
    let o = order(&lines, 23107);
    // events, UTC: 1 Thu 03-26 08:00 (10:00 local, also created_at), 20 Thu 10:00 (12:00),
    // 7 Fri 03-27 12:00 (14:00), 11 Mon 03-30 10:00 (13:00 local, now UTC+3); now Wed 04-01 00:00
    // (03:00 local). Nothing from orders.jsonl: pending, normal grid.
    assert_eq!(o["urgency"], "pending");
    assert_numbers(
        o,
        &[
            ("/untracked_seconds", 0.0),
            // group 1, 10:00 → 12:00
            ("/groups/1/wall_seconds", 7200.0),
            ("/groups/1/working_seconds", 7200.0),
            // group 2, Thu 12:00 → Fri 14:00: 26 h; working Thu 12–18 (6 h) + Fri 09–14 (5 h) = 11 h
            ("/groups/2/wall_seconds", 93600.0),
            ("/groups/2/working_seconds", 39600.0),
            // group 3, Fri 12:00 UTC → Mon 10:00 UTC: 70 h (71 h on the wall clock, one hour lost);
            // working Fri 14:00 → Sun 08:00 local = 42 h on the clock − 1 h = 41 h, Sunday off,
            // Mon 08:00 → 13:00 local = 5 h: 46 h
            ("/groups/3/wall_seconds", 252000.0),
            ("/groups/3/working_seconds", 165600.0),
            // group 4, open: Mon 10:00 UTC → Wed 00:00 UTC = 38 h; working Mon 13–18 (5 h) + Tue 09–18
            // (9 h) = 14 h
            ("/groups/4/wall_seconds", 136800.0),
            ("/groups/4/working_seconds", 50400.0),
            ("/intervals/3/wall_seconds", 136800.0),
            // to delivery, Thu 08:00 → Mon 10:00 UTC = 98 h; working 7200 + 39600 + 165600
            ("/cycles/1/wall_seconds", 352800.0),
            ("/cycles/1/working_seconds", 212400.0),
            // full cycle, still open: up to now, 352800 + 136800; working 212400 + 50400
            ("/cycles/2/wall_seconds", 489600.0),
            ("/cycles/2/working_seconds", 262800.0),
            // production: group 3 alone
            ("/cycles/3/wall_seconds", 252000.0),
            ("/cycles/3/working_seconds", 165600.0),
        ],
    );
    assert!(o["intervals"][3]["left_at"].is_null());
    assert_eq!(o["cycles"]["1"]["open"], false);
    assert_eq!(o["cycles"]["2"]["open"], true);
    // normal grid: 2 → 39600 ≥ 28800 over; 3 → 165600 / 216000 = 77 % ok; 4 → 50400 / 57600 =
    // 87.5 % near
    assert_eq!(o["groups"]["2"]["sla"], "over");
    assert_eq!(o["groups"]["3"]["sla"], "ok");
    assert_eq!(o["groups"]["4"]["sla"], "near");
    assert_eq!(o["sla"], "over");
}

/// A deterministic shuffle (splitmix64 driving Fisher–Yates), so a failure can be replayed.
fn shuffled<T>(mut items: Vec<T>, seed: u64) -> Vec<T> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

#[test]
fn shuffled_and_duplicated_event_lines_give_byte_identical_output() {
    let ws = Workspace::new();
    let baseline = ws.run(timeline_args(&example("events.jsonl"), EXAMPLES_NOW, &[]));
    baseline.assert_success();
    let lines: Vec<String> = example_text("events.jsonl").lines().map(String::from).collect();

    for seed in [1, 2, 3] {
        let mut doubled = lines.clone();
        doubled.extend(lines.iter().step_by(seed as usize + 1).cloned());
        let text = shuffled(doubled, seed).join("\n") + "\n";
        let events = ws.write(&format!("shuffled-{seed}.jsonl"), &text);
        let outcome = ws.run(timeline_args(&events, EXAMPLES_NOW, &[]));
        outcome.assert_success();
        assert!(outcome.stdout == baseline.stdout, "seed {seed}: the output differs from the examples' output");
    }
}

#[test]
fn spilling_sorted_chunks_to_temporary_files_gives_byte_identical_output() {
    let ws = Workspace::new();
    let lines: Vec<String> = example_text("events.jsonl").lines().map(String::from).collect();
    let shuffled_events = ws.write("shuffled.jsonl", &(shuffled(lines, 42).join("\n") + "\n"));
    for events in [example("events.jsonl"), shuffled_events] {
        let in_memory = ws.run(timeline_args(&events, EXAMPLES_NOW, &[]));
        let spilled = ws.run(timeline_args(&events, EXAMPLES_NOW, &["--chunk-events", "3"]));
        in_memory.assert_success();
        spilled.assert_success();
        assert_eq!(in_memory.json_lines().len(), EXAMPLE_ORDERS.len());
        assert!(spilled.stdout == in_memory.stdout, "{}: spilling changed the output", events.display());
    }
}

#[test]
fn malformed_lines_are_named_by_file_line_and_field_while_good_lines_are_still_written() {
    let ws = Workspace::new();
    let good: Vec<String> = example_text("events.jsonl").lines().take(3).map(String::from).collect();
    let text = [
        good[0].as_str(),
        "this is not JSON",
        good[1].as_str(),
        r#"{"event": "order.change_order_status", "context": {"id": 23199, "status_group_id": 1, "status_changed_at": "2026-01-02T07:15:00.000000Z"}}"#,
        "",
        r#"{"event": "order.change_order_status", "context": {"id": 23199, "status_id": 1, "status_group_id": 1, "status_changed_at": "02/01/2026 07:15"}}"#,
        good[2].as_str(),
    ]
    .join("\n");
    let events = ws.write("events.jsonl", &text);
    let outcome = ws.run(timeline_args(&events, EXAMPLES_NOW, &[]));

    let file = events.display().to_string();
    outcome.assert_failure_mentioning(&[
        &format!("{file}:2: body is not a JSON object"),
        &format!("{file}:4: context.status_id: missing"),
        &format!("{file}:6: context.status_changed_at: \"02/01/2026 07:15\" is not a timestamp"),
        "3 rejected",
    ]);
    assert!(!outcome.stderr.contains(&format!("{file}:5:")), "a blank line is not an error:\n{}", outcome.stderr);
    let written = outcome.json_lines();
    assert_eq!(written.len(), 1, "{}", outcome.stdout);
    assert_eq!(written[0]["order_id"], 23101);
    assert_eq!(status_path(&written[0]), [1, 20, 19], "every good line made it");
}

#[test]
fn output_file_receives_the_result_and_no_partial_file_is_left() {
    let ws = Workspace::new();
    let to_stdout = ws.run(timeline_args(&example("events.jsonl"), EXAMPLES_NOW, &[]));
    to_stdout.assert_success();

    let out = ws.path("result.jsonl");
    let to_file = ws.run(timeline_args(&example("events.jsonl"), EXAMPLES_NOW, &["--output", &out.display().to_string()]));
    to_file.assert_success();
    assert_eq!(to_file.stdout, "", "nothing goes to standard output");
    assert_eq!(std::fs::read_to_string(&out).expect("the output file exists"), to_stdout.stdout);
    let mut names: Vec<String> =
        std::fs::read_dir(ws.dir.path()).expect("listing").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["result.jsonl"], "no result.jsonl.partial is left behind");
}

#[test]
fn now_before_later_events_ignores_them_and_leaves_out_orders_not_started_yet() {
    let now = "2026-02-10T00:00:00Z";
    let ws = Workspace::new();
    let outcome = ws.run(timeline_args(&example("events.jsonl"), now, &[]));
    outcome.assert_success();
    let lines = outcome.json_lines();
    let ids: Vec<i64> = lines.iter().map(|l| l["order_id"].as_i64().unwrap_or(0)).collect();
    assert_eq!(ids, [23101, 23102, 23103, 23104], "orders created after {now} are absent");
    for line in &lines {
        assert_eq!(line["as_of"], now);
        for interval in line["intervals"].as_array().expect("intervals") {
            assert!(interval["entered_at"].as_str().is_some_and(|t| t < now), "{interval} is after {now}");
        }
    }
    // 23104 was completed on 02-09 and reopened on 02-10 08:30: as of midnight it is completed.
    let o = order(&lines, 23104);
    assert_eq!(status_path(o), [1, 20, 7, 11, 12]);
    assert_eq!(o["event_count"], 5);
    assert_eq!(o["groups"]["4"]["visits"], 1);
    // its last interval is open and measured up to now: 02-09 09:00 → 02-10 00:00 = 15 h
    assert_numbers(o, &[("/intervals/4/wall_seconds", 54000.0)]);
}

#[test]
fn now_that_is_not_a_time_is_refused_naming_the_flag() {
    let ws = Workspace::new();
    let outcome = ws.run(timeline_args(&example("events.jsonl"), "yesterday", &[]));
    outcome.assert_failure_mentioning(&["--now", "yesterday"]);
    assert_eq!(outcome.stdout, "");
}

#[test]
fn settings_with_an_invalid_window_are_refused_naming_its_json_path() {
    let ws = Workspace::new();
    let settings =
        ws.write("settings.json", r#"{"timezone": "Europe/Kyiv", "calendars": {"default": {"weekly": {"mon": ["25:00-18:00"]}}}}"#);
    let outcome =
        ws.run(["timeline", "--events", &example("events.jsonl").display().to_string(), "--settings", &settings.display().to_string()]);
    outcome.assert_failure_mentioning(&[&settings.display().to_string(), "calendars.default.weekly.mon[0]", "25:00-18:00"]);
    assert_eq!(outcome.stdout, "");
}

#[test]
fn missing_events_file_is_refused_naming_the_file() {
    let ws = Workspace::new();
    let missing = ws.path("no-such-events.jsonl");
    let outcome = ws.run(["timeline", "--events", &missing.display().to_string(), "--now", EXAMPLES_NOW]);
    outcome.assert_failure_mentioning(&[&missing.display().to_string()]);
    assert_eq!(outcome.stdout, "");
}
