//! The binary's surface: version, help, and the layered configuration (defaults ← file ←
//! `KSA__SECTION__KEY` ← flags) as a user meets it.

mod common;

use common::{Workspace, run};

#[test]
fn version_prints_the_package_version() {
    let outcome = Workspace::new().run(["version"]);
    outcome.assert_success();
    assert_eq!(outcome.stdout.trim(), format!("keycrm-analytics {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_every_subcommand_and_the_global_flags() {
    let outcome = Workspace::new().run(["--help"]);
    outcome.assert_success();
    for word in ["version", "migrate", "timeline", "--config", "--data-dir"] {
        assert!(outcome.stdout.contains(word), "--help does not mention {word}:\n{}", outcome.stdout);
    }
    let timeline = Workspace::new().run(["timeline", "--help"]);
    timeline.assert_success();
    for flag in ["--events", "--settings", "--orders", "--now", "--output", "--chunk-events"] {
        assert!(timeline.stdout.contains(flag), "timeline --help does not mention {flag}:\n{}", timeline.stdout);
    }
}

#[test]
fn unknown_subcommand_fails_with_usage() {
    Workspace::new().run(["frobnicate"]).assert_failure_mentioning(&["frobnicate", "Usage"]);
}

#[test]
fn environment_variable_naming_no_setting_is_refused_naming_the_variable() {
    let ws = Workspace::new();
    let outcome = run(ws.command(["version"]).env("KSA__SERVER__LISTN", "x"));
    outcome.assert_failure_mentioning(&["KSA__SERVER__LISTN", "listn"]);
    assert_eq!(outcome.stdout, "");

    let outcome = run(ws.command(["version"]).env("KSA__SERVRE__LISTEN", "x"));
    outcome.assert_failure_mentioning(&["KSA__SERVRE__LISTEN", "servre"]);
}

#[test]
fn environment_variable_with_a_value_the_setting_cannot_take_is_refused_naming_both() {
    let outcome = run(Workspace::new().command(["version"]).env("KSA__LOG__FORMAT", "xml"));
    outcome.assert_failure_mentioning(&["KSA__LOG__FORMAT", "xml"]);
}

#[test]
fn config_file_with_an_unknown_key_is_refused_naming_the_key_and_the_file() {
    let ws = Workspace::new();
    let config = ws.write("ksa.toml", "[server]\nlisen = \"0.0.0.0:9000\"\n");
    let outcome = ws.run(["--config", &config.display().to_string(), "version"]);
    outcome.assert_failure_mentioning(&["lisen", &config.display().to_string()]);
}

#[test]
fn missing_config_file_is_refused_naming_it() {
    let ws = Workspace::new();
    let config = ws.path("absent.toml");
    ws.run(["--config", &config.display().to_string(), "version"]).assert_failure_mentioning(&[&config.display().to_string()]);
}

#[test]
fn data_dir_comes_from_the_flag_over_the_environment_over_the_config_file() {
    let ws = Workspace::new();
    let config = ws.write("ksa.toml", "data_dir = \"from-file\"\n");
    let config = config.display().to_string();

    ws.run(["--config", &config, "migrate"]).assert_success();
    assert!(ws.path("from-file/state.db").is_file(), "the file's data_dir is used");

    run(ws.command(["--config", &config, "migrate"]).env("KSA__DATA_DIR", "from-env")).assert_success();
    assert!(ws.path("from-env/state.db").is_file(), "the environment beats the file");

    run(ws.command(["--config", &config, "--data-dir", "from-flag", "migrate"]).env("KSA__DATA_DIR", "from-env")).assert_success();
    assert!(ws.path("from-flag/state.db").is_file(), "the flag beats the environment");
}

#[test]
fn keycrm_analytics_toml_in_the_working_folder_is_read_without_config() {
    let ws = Workspace::new();
    ws.write("keycrm-analytics.toml", "[log]\nformat = \"yaml\"\n");
    ws.run(["version"]).assert_failure_mentioning(&["keycrm-analytics.toml", "yaml"]);
}
