//! The packetdrill corpus (tests/packetdrill/): every script against the `base` and the
//! `rack` function blocks, as `plugtcp packetdrill --stack NAME` runs it. A script with a
//! `.exfail` file beside it must fail (and this test fails when it starts passing).

use std::path::{Path, PathBuf};

use plugtcp_cli::packetdrill::{run_file, RunOptions};

/// The issue that asked for the corpus set its size; fewer means scripts went missing.
const MIN_SCRIPTS: usize = 250;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/packetdrill")
}

fn scripts(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            scripts(&p, out);
        } else if p.extension().is_some_and(|x| x == "pkt") {
            out.push(p);
        }
    }
}

/// Runs every script against `stack`; returns the failures' reports.
fn run_corpus(stack: &str, all: &[PathBuf]) -> Vec<String> {
    let opts = RunOptions {
        stack: Some(stack.to_string()),
        ..Default::default()
    };
    all.iter()
        .map(|p| run_file(p, &opts))
        .filter(|r| !r.verdict.ok())
        .map(|r| {
            format!(
                "[{stack}] {} {}: {}",
                r.verdict.label(),
                r.path,
                r.error.as_deref().unwrap_or("(it passed)")
            )
        })
        .collect()
}

#[test]
fn every_script_passes_on_base_and_rack() {
    let mut all = Vec::new();
    scripts(&corpus_dir(), &mut all);
    assert!(
        all.len() >= MIN_SCRIPTS,
        "only {} scripts under {}",
        all.len(),
        corpus_dir().display()
    );
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = ["base", "rack"]
            .into_iter()
            .map(|stack| {
                let all = &all;
                s.spawn(move || run_corpus(stack, all))
            })
            .collect();
        runs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        2 * all.len(),
        failures.join("\n\n")
    );
}
