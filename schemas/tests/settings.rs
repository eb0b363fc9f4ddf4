//! The settings document: the issue's example reads as written, defaults fill what is left
//! out, and every invalid value is rejected with its path.

use ksa_schemas::ProjectSettings;
use ksa_schemas::settings::{CalendarSpec, CycleEnd, CycleStart, NearThreshold, Occurrence, UrgencyMatch, Window};

const EXAMPLE: &str = r#"{
  "timezone": "Europe/Kyiv",
  "terminal_groups": [5, 6],
  "calendars": {
    "default": {"weekly": {"mon": ["09:00-13:00", "14:00-18:00"], "tue": [], "wed": [], "thu": [], "fri": [], "sat": [], "sun": []},
                "exceptions": {"2026-01-01": [], "2026-03-07": ["10:00-14:00"]}},
    "groups": {"3": {"weekly": {"mon": ["22:00-06:00"]}, "exceptions": {}}}
  },
  "sla": {"near": {"percent": 80}, "normal": {"2": "02:00", "3": "36:30"}, "urgent": {"2": "01:00", "3": "08:00"}},
  "cycles": [
    {"id": 1, "title": "to delivery", "start": {"kind": "created"}, "end": {"kind": "group", "id": 4}},
    {"id": 2, "title": "full cycle", "start": {"kind": "created"}, "end": {"kind": "group", "id": 5}}
  ],
  "urgency_rules": [{"match_type": "sku", "match_value": "Термінове виготовлення"}, {"match_type": "offer_id", "match_value": "16"}]
}"#;

#[test]
fn the_documented_example_reads_as_written() {
    let s = ProjectSettings::from_json(EXAMPLE).unwrap();
    assert_eq!(s.timezone.name(), "Europe/Kyiv");
    assert!(s.is_terminal(5) && s.is_terminal(6) && !s.is_terminal(4));
    assert_eq!(s.calendars.default.weekly[0], vec![Window::parse("09:00-13:00").unwrap(), Window::parse("14:00-18:00").unwrap()]);
    assert_eq!(s.calendars.default.exceptions.len(), 2);
    let night = &s.calendars.groups[&3];
    assert!(night.weekly[0][0].is_overnight());
    assert!(night.weekly[1].is_empty(), "missing weekdays are days off");
    assert_eq!(s.sla.normal.groups[&3], 36 * 3600 + 30 * 60);
    assert_eq!(s.sla.urgent.groups[&2], 3600);
    assert_eq!(s.sla.near, NearThreshold::Percent(80.0));
    assert_eq!(s.cycles[1].end, CycleEnd::Group { id: 5, occurrence: Occurrence::First });
    assert_eq!(s.urgency_rules[1].matches, UrgencyMatch::OfferId(16));
    assert_eq!(s.default_cycle_id(), Some(1));
}

#[test]
fn an_empty_document_gives_the_embedded_defaults() {
    let s = ProjectSettings::from_json("{}").unwrap();
    assert_eq!(s, ProjectSettings::default());
    assert!(s.calendars.default.is_always_open());
    assert_eq!(s.cycles.len(), 2);
}

#[test]
fn presets_near_before_and_occurrences_are_understood() {
    let s = ProjectSettings::from_json(
        r#"{"calendars": {"default": "Mon-Fri 09:00-18:00", "groups": {"4": {"preset": "24/7", "exceptions": {"2026-01-01": []}}}},
            "sla": {"near": {"before": "00:30"}, "normal": {"2": null}},
            "cycles": [{"id": 5, "title": "rework", "start": {"kind": "status", "id": 20, "occurrence": "last"}, "end": {"kind": "status", "id": 7}}],
            "default_cycle": 5}"#,
    )
    .unwrap();
    assert_eq!(s.calendars.default, CalendarSpec::office_hours());
    assert!(!s.calendars.groups[&4].is_always_open(), "a holiday makes 24/7 not always open");
    assert_eq!(s.sla.near, NearThreshold::BeforeSeconds(1800));
    assert!(s.sla.normal.groups.is_empty(), "null leaves the limit unset");
    assert_eq!(s.cycles[0].start, CycleStart::Status { id: 20, occurrence: Occurrence::Last });
    assert_eq!(s.default_cycle_id(), Some(5));
}

fn rejected(doc: &str) -> String {
    ProjectSettings::from_json(doc).expect_err("expected a rejection").to_string()
}

#[test]
fn every_invalid_value_is_rejected_with_its_path() {
    let cases = [
        (
            r#"{"calendars": {"groups": {"3": {"weekly": {"mon": ["09:00-12:00", "25:00-18:00"]}}}}}"#,
            "calendars.groups.3.weekly.mon[1]: \"25:00-18:00\" is not a window",
        ),
        (r#"{"calendars": {"default": {"weekly": {"mnday": []}}}}"#, "calendars.default.weekly.mnday: unknown field `mnday`"),
        (
            r#"{"calendars": {"default": {"weekly": {}, "exceptions": {"2026-02-30": []}}}}"#,
            "calendars.default.exceptions.2026-02-30: \"2026-02-30\" is not a date",
        ),
        (r#"{"calendars": {"default": "9 to 5"}}"#, "calendars.default: \"9 to 5\" is not a calendar preset"),
        (r#"{"calendars": {"groups": {"x": "24/7"}}}"#, "calendars.groups.x: \"x\" is not a status group id"),
        (r#"{"timezone": "Europe/Kiev2"}"#, "timezone: \"Europe/Kiev2\" is not an IANA time zone"),
        (r#"{"sla": {"normal": {"2": "2h"}}}"#, "sla.normal.2: \"2h\" is not a duration"),
        (r#"{"sla": {"urgent": {"2": "01:75"}}}"#, "sla.urgent.2: \"01:75\" is not a duration"),
        (r#"{"sla": {"near": {"percent": 180}}}"#, "sla.near.percent: 180 is not a share"),
        (r#"{"sla": {"near": {"later": "00:10"}}}"#, "sla.near: unknown variant `later`"),
        (
            r#"{"cycles": [{"id": 1, "title": "a", "start": {"kind": "created"}, "end": {"kind": "created"}}]}"#,
            "cycles[0].end.kind: a cycle cannot end at order creation",
        ),
        (
            r#"{"cycles": [{"id": 1, "title": "a", "start": {"kind": "group"}, "end": {"kind": "group", "id": 4}}]}"#,
            "cycles[0].start.id: missing",
        ),
        (
            r#"{"cycles": [{"id": 1, "title": "a", "start": {"kind": "created"}, "end": {"kind": "group", "id": 4}}, {"id": 1, "title": "b", "start": {"kind": "created"}, "end": {"kind": "group", "id": 5}}]}"#,
            "cycles[1].id: 1 is used by another cycle",
        ),
        (
            r#"{"cycles": [{"id": 1, "title": "a", "start": {"kind": "birth"}, "end": {"kind": "group", "id": 4}}]}"#,
            "cycles[0].start.kind: unknown variant `birth`",
        ),
        (
            r#"{"cycles": [{"id": 1, "title": "a", "start": {"kind": "created"}, "end": {"kind": "group", "id": 4, "occurrence": "middle"}}]}"#,
            "cycles[0].end.occurrence: unknown variant `middle`",
        ),
        (r#"{"default_cycle": 9}"#, "default_cycle: 9 is not the id of a cycle"),
        (
            r#"{"urgency_rules": [{"match_type": "offer_id", "match_value": "sixteen"}]}"#,
            "urgency_rules[0].match_value: \"sixteen\" is not an offer id",
        ),
        (r#"{"urgency_rules": [{"match_type": "colour", "match_value": "red"}]}"#, "urgency_rules[0].match_type: unknown variant `colour`"),
        (r#"{"terminal_groups": [5, 0]}"#, "terminal_groups[1]: 0 is not a status group id"),
        (r#"{"timezone": "UTC", "colour": "red"}"#, "colour: unknown field `colour`"),
        (r#"{"timezone": "UTC""#, "EOF while parsing"),
    ];
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(doc, expected)| {
            let message = rejected(doc);
            (!message.starts_with(expected)).then(|| format!("{doc}\n  got:  {message}\n  want: {expected}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn windows_accept_24_00_as_an_end_only_and_en_dashes() {
    assert_eq!(Window::parse("18:00-24:00"), Some(Window { start: 1080, end: 1440 }));
    assert_eq!(Window::parse("09:00–18:00"), Some(Window { start: 540, end: 1080 }));
    assert_eq!(Window::parse("24:00-06:00"), None);
    assert_eq!(Window::parse("9:00-18:00"), Some(Window { start: 540, end: 1080 }));
    assert_eq!(Window::parse("09:60-18:00"), None);
    assert_eq!(Window::parse("0900-1800"), None);
}

#[test]
fn every_invalid_part_of_a_document_is_reported_at_once() {
    let doc = r#"{
        "timezone": "Mars/Olympus",
        "calendars": {"default": {"weekly": {"mon": ["25:00-18:00"]}}, "groups": {"3": "24/7", "4": {"weekly": {"tue": ["9-5"]}}}},
        "sla": {"near": {"percent": 120}, "normal": {"2": "02:00", "3": "soon"}, "urgent": {"3": "1:5"}},
        "cycles": [
            {"id": 1, "title": "ok", "start": {"kind": "created"}, "end": {"kind": "group", "id": 4}},
            {"id": 2, "title": "", "start": {"kind": "created"}, "end": {"kind": "group", "id": 5}}
        ],
        "urgency_rules": [{"match_type": "sku", "match_value": "X"}, {"match_type": "offer_id", "match_value": "x"}],
        "colour": "red"
    }"#;
    let errors = ProjectSettings::validate_document(doc).expect_err("the document is invalid");
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "timezone",
        "calendars.default.weekly.mon[0]",
        "calendars.groups.4.weekly.tue[0]",
        "sla.near.percent",
        "sla.normal.3",
        "sla.urgent.3",
        "cycles[1].title",
        "urgency_rules[1].match_value",
        "colour",
    ] {
        assert!(paths.contains(&expected), "no error at {expected}; errors: {errors:#?}");
    }
    assert_eq!(errors.len(), 9, "{errors:#?}");
    // A valid document reads as `from_json` reads it.
    let valid = r#"{"timezone": "Europe/Kyiv", "sla": {"normal": {"2": "02:00"}}}"#;
    assert_eq!(ProjectSettings::validate_document(valid).unwrap(), ProjectSettings::from_json(valid).unwrap());
    // Checks across parts still run.
    let errors = ProjectSettings::validate_document(r#"{"default_cycle": 9}"#).unwrap_err();
    assert_eq!(errors[0].path, "default_cycle");
}

#[test]
fn completion_and_cancellation_name_the_terminal_groups() {
    let defaults = ProjectSettings::from_json("{}").unwrap();
    assert_eq!((defaults.completion_groups, defaults.cancellation_groups), ([5].into(), [6].into()));
    let named = ProjectSettings::from_json(r#"{"completion_groups": [4, 5], "cancellation_groups": [6]}"#).unwrap();
    assert_eq!(named.terminal_groups, [4, 5, 6].into());
    // A document from before: group 6 cancels, the others complete.
    let legacy = ProjectSettings::from_json(r#"{"terminal_groups": [4, 6]}"#).unwrap();
    assert_eq!((legacy.completion_groups, legacy.cancellation_groups), ([4].into(), [6].into()));
    for (doc, path) in [
        (r#"{"completion_groups": [5, 6], "cancellation_groups": [6]}"#, "cancellation_groups"),
        (r#"{"terminal_groups": [5], "completion_groups": [5], "cancellation_groups": [6]}"#, "terminal_groups"),
    ] {
        assert_eq!(ProjectSettings::from_json(doc).unwrap_err().path, path, "{doc}");
    }
}

#[test]
fn urgency_rules_may_have_a_name() {
    let s = ProjectSettings::from_json(r#"{"urgency_rules": [{"name": " Терміново ", "match_type": "sku", "match_value": "T"}]}"#).unwrap();
    assert_eq!(s.urgency_rules[0].name.as_deref(), Some("Терміново"));
}

#[test]
fn the_written_out_document_reads_back_as_the_same_settings() {
    let full = r#"{
        "timezone": "Europe/Kyiv",
        "completion_groups": [4, 5], "cancellation_groups": [6],
        "calendars": {"default": "Mon-Fri 09:00-18:00", "groups": {"3": {"weekly": {"mon": ["22:00-06:00"], "sat": ["00:00-24:00"]}, "exceptions": {"2026-01-01": [], "2026-03-07": ["10:00-14:00"]}}}},
        "sla": {"near": {"before": "00:30"}, "normal": {"2": "02:00", "3": "36:30"}, "urgent": {"3": "08:00"}, "statuses": {"normal": {"20": "00:45"}}},
        "cycles": [{"id": 7, "title": "rework", "start": {"kind": "status", "id": 31, "occurrence": "last"}, "end": {"kind": "group", "id": 4}}],
        "default_cycle": 7,
        "urgency_rules": [{"name": "Термінове", "match_type": "sku", "match_value": "Термінове виготовлення"}, {"match_type": "offer_id", "match_value": 16, "is_active": false}]
    }"#;
    for doc in [full, "{}"] {
        let settings = ProjectSettings::from_json(doc).unwrap();
        let written = settings.to_document();
        assert_eq!(ProjectSettings::from_json(&written.to_string()).unwrap(), settings, "{written:#}");
        assert_eq!(ProjectSettings::from_json(&written.to_string()).unwrap().to_document(), written);
    }
    assert_eq!(ProjectSettings::from_json(full).unwrap().to_document()["sla"]["normal"]["3"], "36:30");
}
