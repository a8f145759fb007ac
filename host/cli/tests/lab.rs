//! The CC lab (`plugtcp lab run`): every bundled example runs and keeps the lab's
//! invariants, the queue disciplines do what they are for under real TCP flows, a cellular
//! trace bounds what a link delivers, runs are deterministic however many run at once, and
//! a bad scenario is refused naming its file, line and field.

use std::path::{Path, PathBuf};

#[path = "common/chromium.rs"]
mod chromium;

use plugtcp_cli::lab::driver::{invariant_violations, run_file, LabOptions};
use plugtcp_cli::lab::results::{LabResults, RunResult};
use plugtcp_cli::lab::scenario;
use plugtcp_cli::lab::units::Dur;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("plugtcp-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs scenario text (written to a file in `dir`), all points, on the simulator.
fn run_text(dir: &Path, text: &str, duration: Option<&str>) -> LabResults {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    let file = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let opts = LabOptions {
        scenario: path,
        duration: duration.map(|d| Dur::parse(d).unwrap()),
        ..Default::default()
    };
    run_file(file, &opts).unwrap()
}

fn run_of<'a>(r: &'a LabResults, point: &str) -> &'a RunResult {
    r.runs
        .iter()
        .find(|x| x.point == point)
        .unwrap_or_else(|| panic!("no run of {point}"))
}

fn assert_invariants(r: &LabResults) {
    for run in &r.runs {
        let v = invariant_violations(run);
        assert!(v.is_empty(), "{} {}: {v:?}", r.scenario, run.point);
        for f in &run.flows {
            assert!(f.intact, "{} {}: flow {}", r.scenario, run.point, f.name);
        }
    }
}

#[test]
fn every_example_runs_and_keeps_the_invariants() {
    let dir = workspace().join("examples/lab");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 7, "{names:?}");
    let out = temp_dir("examples");
    for path in names {
        let file = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let points = file.points.len();
        let opts = LabOptions {
            scenario: path.clone(),
            out: Some(out.join(path.file_stem().unwrap())),
            duration: Some(Dur::parse("6s").unwrap()),
            ..Default::default()
        };
        let r = run_file(file, &opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(r.points.len(), points, "{}", path.display());
        assert_invariants(&r);
        for run in &r.runs {
            // Something crossed the bottleneck, and no flow that ran the whole time moved
            // nothing.
            assert!(
                run.utilisation() > 0.05,
                "{} {}: {}",
                r.scenario,
                run.point,
                run.utilisation()
            );
            for f in &run.flows {
                if f.start_s < 3.0 {
                    assert!(
                        f.bytes > 0,
                        "{} {}: {} moved nothing",
                        r.scenario,
                        run.point,
                        f.name
                    );
                }
            }
        }
        let report = out.join(path.file_stem().unwrap()).join("report.html");
        assert!(report.is_file(), "{}", report.display());
        eprintln!("{}: {} runs", path.display(), r.runs.len());
    }
    let _ = std::fs::remove_dir_all(&out);
}

const AQM: &str = r#"
name = "aqm"
duration = "20s"
[sysctls]
recvspace = 2097152
sendspace = 2097152
[[link]]
bandwidth = "20Mbit"
delay = "20ms"
queue = "4bdp"
[[flow]]
name = "bulk"
cc = "cubic"
[[flow]]
name = "sparse"
cc = "cubic"
app = "request_response"
request = "200B"
response = "1KB"
think = "20ms"
[sweep]
"link.qdisc" = ["drop_tail", "codel", "fq_codel"]
"#;

#[test]
fn codel_holds_the_standing_queue_near_target_and_fq_codel_isolates_a_sparse_flow() {
    let dir = temp_dir("aqm");
    let r = run_text(&dir, AQM, None);
    assert_invariants(&r);
    let bn = |p: &str| {
        let run = run_of(&r, p);
        run.links[run.bottleneck].clone()
    };
    let (dt, codel, fq) = (
        bn("qdisc=drop_tail"),
        bn("qdisc=codel"),
        bn("qdisc=fq_codel"),
    );
    eprintln!(
        "p50 delay: drop-tail {:.1} ms, codel {:.1} ms, fq_codel {:.1} ms",
        dt.delay_p50_ms, codel.delay_p50_ms, fq.delay_p50_ms
    );
    // CoDel: a long cubic flow's standing queue stays near the 5 ms target (drop-tail lets
    // it fill the 4-BDP buffer), and the link stays busy.
    assert!(dt.delay_p50_ms > 60.0, "{dt:?}");
    assert!(
        codel.delay_p50_ms > 0.5 && codel.delay_p50_ms < 10.0,
        "{codel:?}"
    );
    assert!(codel.utilisation > 0.85, "{codel:?}");
    assert!(codel.drops > 0, "{codel:?}");
    // FQ-CoDel: the sparse flow's packets wait far less than the bulk flow's.
    let flows = &run_of(&r, "qdisc=fq_codel").flows;
    let (bulk, sparse) = (&flows[0], &flows[1]);
    eprintln!(
        "fq_codel p95: bulk {:.2} ms, sparse {:.2} ms",
        bulk.queue_delay_p95_ms, sparse.queue_delay_p95_ms
    );
    assert!(sparse.queue_delay_p95_ms < 2.0, "{sparse:?}");
    assert!(
        bulk.queue_delay_p50_ms > 2.0 * sparse.queue_delay_p50_ms.max(0.1),
        "{bulk:?}"
    );
    // Under drop-tail both wait behind the bulk flow's queue.
    let dt_sparse = &run_of(&r, "qdisc=drop_tail").flows[1];
    assert!(dt_sparse.queue_delay_p50_ms > 30.0, "{dt_sparse:?}");
    // The sparse flow's exchanges complete (its responses arrive intact).
    assert!(sparse.bytes > 100_000, "{sparse:?}");
}

#[test]
fn red_and_pie_drop_without_ecn_and_mark_with_it() {
    let dir = temp_dir("red-pie");
    let text = r#"
name = "red and pie"
duration = "15s"
[sysctls]
recvspace = 2097152
sendspace = 2097152
[[link]]
bandwidth = "20Mbit"
delay = "20ms"
queue = "4bdp"
qdisc = "red"
[[flow]]
cc = "newreno"
count = 2
[sweep]
"link.qdisc" = ["red", "pie"]
"link.ecn" = [false, true]
"#;
    let r = run_text(&dir, text, None);
    assert_invariants(&r);
    for q in ["red", "pie"] {
        let plain = run_of(&r, &format!("qdisc={q} ecn=false"));
        let ecn = run_of(&r, &format!("qdisc={q} ecn=true"));
        let (p, e) = (&plain.links[0], &ecn.links[0]);
        eprintln!(
            "{q}: drops {} marks {} / with ECN drops {} marks {}",
            p.drops, p.marks, e.drops, e.marks
        );
        assert!(p.drops > 10 && p.marks == 0, "{q} without ECN: {p:?}");
        // With ECN the AQM marks instead; what drops remain are the queue's limit.
        assert!(e.marks > 10, "{q} with ECN: {e:?}");
        assert!(e.drops < p.drops, "{q}: {e:?} vs {p:?}");
        // Either way the queue stays well below the 4-BDP limit.
        assert!(
            p.delay_p95_ms < 100.0 && e.delay_p95_ms < 100.0,
            "{q}: {p:?} {e:?}"
        );
    }
}

#[test]
fn a_cellular_trace_bounds_what_the_link_delivers() {
    // The real traces are data for tests, kept outside the repository.
    let trace = workspace().join("../shared/traces/Verizon-LTE-short.down");
    let trace = std::env::var_os("PLUGTCP_TRACE")
        .map(PathBuf::from)
        .unwrap_or(trace);
    if !trace.is_file() {
        eprintln!(
            "skipping: no trace at {} (set PLUGTCP_TRACE)",
            trace.display()
        );
        return;
    }
    let t = plugtcp_io::mahimahi::load(&trace).unwrap();
    let dir = temp_dir("trace");
    let text = format!(
        r#"
name = "verizon"
duration = "20s"
[sysctls]
recvspace = 2097152
sendspace = 2097152
[[link]]
delay = "20ms"
queue = "300p"
trace = "{}"
[[flow]]
cc = "cubic"
count = 2
"#,
        trace.display()
    );
    let r = run_text(&dir, &text, None);
    assert_invariants(&r);
    let run = &r.runs[0];
    let l = &run.links[0];
    let allowed = t.opportunities_between(0, 20_000_000_000) as f64 * 1500.0 * 8.0;
    eprintln!(
        "trace allows {:.1} Mbit, delivered {:.1} Mbit ({:.1}%)",
        allowed / 1e6,
        l.delivered_bits / 1e6,
        l.utilisation * 100.0
    );
    assert!(l.delivered_bits <= allowed, "{l:?}");
    assert!((l.capacity_bits - allowed).abs() < 1.0, "{l:?}");
    // Two bulk flows keep a 300-packet queue busy most of the time.
    assert!(l.utilisation > 0.6, "{l:?}");
    // Time series: no sample delivered more than the trace's opportunities in its interval.
    let flows: f64 = run.flows.iter().map(|f| f.bytes as f64 * 8.0).sum();
    assert!(flows <= allowed);
}

#[test]
fn runs_are_deterministic_and_jobs_do_not_change_them() {
    let dir = temp_dir("determinism");
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        r#"
name = "det"
duration = "5s"
repetitions = 2
[[link]]
bandwidth = "30Mbit"
delay = "10ms"
jitter = "2ms"
loss = 0.001
[[flow]]
cc = "cubic"
count = 2
[sweep]
"flow.cc" = ["cubic", "newreno"]
"#,
    )
    .unwrap();
    let run = |jobs: usize| {
        let opts = LabOptions {
            scenario: path.clone(),
            jobs,
            ..Default::default()
        };
        run_file(scenario::load(&path).unwrap(), &opts).unwrap()
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.runs.len(), 4);
    let key = |r: &LabResults| {
        r.runs
            .iter()
            .map(|x| {
                (
                    x.point.clone(),
                    x.seed,
                    x.flows.iter().map(|f| f.bytes).collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&one), key(&two));
    // The two seeds of a point differ (jitter, loss and start times are the seed's).
    let a = &one.runs[0];
    let b = one
        .runs
        .iter()
        .find(|x| x.point == a.point && x.seed != a.seed)
        .unwrap();
    assert_ne!(a.flows[0].bytes, b.flows[0].bytes);
    assert!(one.points[0].utilisation.max >= one.points[0].utilisation.min);
}

#[test]
fn lab_run_refuses_a_bad_scenario_naming_file_line_and_field() {
    let dir = temp_dir("bad");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "duration = \"5s\"\n[[link]]\nbandwidth = \"10Mbit\"\nqdisc = \"codle\"\n[[flow]]\n",
    )
    .unwrap();
    let refused = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugtcp"))
            .args(["lab", "run"])
            .arg(&path)
            .arg("-o")
            .arg(dir.join("out"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused();
    assert!(
        err.contains(&format!("{}:4:", path.display())) && err.contains("codle"),
        "{err}"
    );
    assert!(!dir.join("out").exists());

    // A module nobody has: the error says where it looked.
    std::fs::write(
        &path,
        "duration = \"5s\"\n[[link]]\nbandwidth = \"10Mbit\"\n[[flow]]\ncc = \"mine\"\n",
    )
    .unwrap();
    let err = refused();
    assert!(
        err.contains("no CC module `mine`") && err.contains("libplugtcp_cc_mine.so"),
        "{err}"
    );
}

/// A real run's report (two sweep points, two flows, two seeds) renders in headless
/// Chromium with its tables and every plot.
#[test]
fn a_real_runs_report_renders_in_chromium() {
    let dir = temp_dir("report");
    let path = dir.join("report-scenario.toml");
    std::fs::write(
        &path,
        r#"
name = "rendered"
description = "Two cubic flows, then newreno, on a 20 Mbit/s link."
duration = "4s"
repetitions = 2
[[link]]
bandwidth = "20Mbit"
delay = "10ms"
[[flow]]
name = "early"
cc = "cubic"
[[flow]]
name = "late"
cc = "cubic"
start = "1s"
[sweep]
"flow.cc" = ["cubic", "newreno"]
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let opts = LabOptions {
        scenario: path.clone(),
        out: Some(out.clone()),
        ..Default::default()
    };
    let r = run_file(scenario::load(&path).unwrap(), &opts).unwrap();
    assert_invariants(&r);
    let report = out.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    for want in [
        "rendered",
        "cc=cubic",
        "cc=newreno",
        "early",
        "late",
        "utilisation",
    ] {
        assert!(html.contains(want), "report lacks {want}");
    }
    chromium::check_report_in_chromium(
        &report,
        &["rendered", "cc=cubic", "cc=newreno", "utilisation"],
    );
}

/// A chain of two links (the second the bottleneck, its capacity on a schedule), a sized
/// flow with its completion time, an on/off flow silent when off, and a link driven by a
/// generated cellular trace that delivers no more than the trace allows.
#[test]
fn chains_schedules_sized_and_on_off_flows_and_generated_traces() {
    let dir = temp_dir("chain");
    let r = run_text(
        &dir,
        r#"
name = "chain"
duration = "12s"
sample = "50ms"
[sysctls]
recvspace = 1048576
sendspace = 1048576
[[link]]
name = "access"
bandwidth = "100Mbit"
delay = "5ms"
[[link]]
name = "core"
delay = "10ms"
queue = "100p"
schedule = [{ at = "0s", bandwidth = "40Mbit" }, { at = "6s", bandwidth = "10Mbit" }]
[[flow]]
name = "sized"
cc = "cubic"
size = "5MB"
[[flow]]
name = "blinking"
cc = "newreno"
app = "on_off"
on = "1s"
off = "1s"
"#,
        None,
    );
    assert_invariants(&r);
    let run = &r.runs[0];
    assert_eq!(run.links.len(), 2);
    assert_eq!(run.links[run.bottleneck].name, "core");
    // 40 Mbit/s for 6 s and 10 Mbit/s for 6 s.
    let core = &run.links[1];
    assert!((core.capacity_bits - 300e6).abs() < 1.0, "{core:?}");
    assert!(core.delivered_bits <= core.capacity_bits);
    let sized = &run.flows[0];
    assert_eq!(sized.bytes, 5_000_000);
    let fct = sized.fct_s.expect("the sized flow completed");
    // 5 MB at 40 Mbit/s at most: 1 s or more, and well within the run.
    assert!(fct > 1.0 && fct < 8.0, "fct {fct}");
    // The on/off flow's goodput samples during its off seconds are (nearly) zero.
    let off: Vec<f64> = run
        .flow_series
        .iter()
        .filter(|s| s.flow == 1 && (s.t % 2.0) > 1.3 && (s.t % 2.0) < 1.95)
        .map(|s| s.goodput_mbps)
        .collect();
    assert!(!off.is_empty());
    assert!(off.iter().all(|&g| g < 0.5), "{off:?}");
    assert_eq!(run.flows[1].limited_by.name(), "application");

    let r = run_text(
        &dir,
        r#"
name = "generated"
duration = "15s"
[sysctls]
recvspace = 1048576
sendspace = 1048576
[[link]]
delay = "20ms"
queue = "150p"
generated_trace = { mean = "8Mbit", variability = 0.7, seed = 5, period = "10s" }
[[flow]]
cc = "cubic"
count = 2
"#,
        None,
    );
    assert_invariants(&r);
    let l = &r.runs[0].links[0];
    let trace =
        plugtcp_io::mahimahi::parse(&plugtcp_io::mahimahi::generate(5, 8.0, 10_000, 0.7)).unwrap();
    let allowed = trace.opportunities_between(0, 15_000_000_000) as f64 * 1500.0 * 8.0;
    assert!((l.capacity_bits - allowed).abs() < 1.0, "{l:?}");
    assert!(l.delivered_bits <= allowed, "{l:?}");
    assert!(l.utilisation > 0.6, "{l:?}");
}
