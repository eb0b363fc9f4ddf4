//! Embeds the web UI (`web/`) in the binary: a table of every file under it, each with
//! `include_bytes!`, so `keycrm-analytics run` serves the UI with nothing else installed.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = manifest.join("..").join("web");
    let mut files = Vec::new();
    collect(&web, &web, &mut files);
    files.sort();
    let mut table = String::from("/// Every file of `web/`, by its path under it.\npub static FILES: &[(&str, &[u8])] = &[\n");
    for (relative, absolute) in files {
        table.push_str(&format!("    ({relative:?}, include_bytes!({absolute:?})),\n"));
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("ui_files.rs");
    std::fs::write(out, table).expect("writing the UI file table");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    if dir == root {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // Test output, dependencies of the browser tests and editor litter are not the UI.
        if name.starts_with('.') || name == "node_modules" || name == "tests" || name == "test-results" {
            continue;
        }
        if path.is_dir() {
            // A file added to or removed from a folder of the UI rebuilds the table.
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            println!("cargo:rerun-if-changed={}", path.display());
            let relative = relative.to_string_lossy().replace('\\', "/");
            files.push((relative, path.display().to_string()));
        }
    }
}
