//! `plugtcp lab run`: every sweep point and seed of a scenario, in parallel over the cores on
//! the simulator (and one at a time with the kernel, whose runs take real time and share
//! the machine), then the summaries, the invariants every run must keep, and the files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use plugtcp_host::registry::loader::SearchPath;

use super::results::{Engine, LabResults, PointSummary, RunResult};
use super::run::{run_sim, RunOptions};
use super::scenario::{self, ScenarioFile};
use super::units::Dur;

/// What `lab run` was asked.
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    pub scenario: PathBuf,
    /// Results directory (None: write nothing, return the results).
    pub out: Option<PathBuf>,
    /// Simulator runs at once (0: one per core).
    pub jobs: usize,
    /// Also run every point with the Linux kernel's TCP.
    pub kernel: bool,
    /// Replaces every point's duration (a quick look, CI).
    pub duration: Option<Dur>,
    pub search_path: SearchPath,
    /// Publish each run's samples as Prometheus gauges (the exporter is the caller's).
    pub metrics: bool,
    /// `--set FIELD=VALUE` overrides, applied when the scenario was loaded (recorded in the
    /// report).
    pub sets: Vec<(String, String)>,
}

/// A rule a run broke: the lab's results cannot be trusted with it.
pub fn invariant_violations(r: &RunResult) -> Vec<String> {
    let mut v = Vec::new();
    for f in &r.flows {
        if !f.intact {
            v.push(format!(
                "flow {}: bytes delivered are not the bytes sent",
                f.name
            ));
        }
    }
    for l in &r.links {
        // Capacity is counted per run; the last packet's serialization may straddle the end.
        if l.utilisation > 1.001 + 3000.0 * 8.0 / l.capacity_bits.max(1.0) {
            v.push(format!(
                "link {}: delivered {:.0} bits of a capacity of {:.0}",
                l.name, l.delivered_bits, l.capacity_bits
            ));
        }
        if l.max_backlog_bytes > l.limit_bytes {
            v.push(format!(
                "link {}: queue reached {} bytes, above its limit of {}",
                l.name, l.max_backlog_bytes, l.limit_bytes
            ));
        }
    }
    v
}

/// Runs the scenario as asked; writes the results directory when `opts.out` is set.
pub fn run_lab(opts: &LabOptions) -> Result<LabResults, String> {
    let file = scenario::load_with(&opts.scenario, &opts.sets).map_err(|e| e.to_string())?;
    run_file(file, opts)
}

/// As [`run_lab`] for a scenario already loaded.
pub fn run_file(mut file: ScenarioFile, opts: &LabOptions) -> Result<LabResults, String> {
    if let Some(d) = opts.duration {
        for p in &mut file.points {
            p.scenario.duration = d;
            p.scenario.sample = p.scenario.sample.min(d);
            for f in &mut p.scenario.flows {
                f.stop = f.stop.map(|s| s.min(d));
                if f.start >= d {
                    f.start = Dur(0);
                }
            }
        }
    }
    {
        use crate::builtins::BuiltinHost as _;
        let (_, errors) = plugtcp_host::Host::with_plugins(opts.search_path.clone());
        for e in errors {
            eprintln!("plugtcp: lab: plugin not loaded: {e}");
        }
    }
    let jobs: Vec<(usize, u64)> = file
        .points
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.scenario.seeds().into_iter().map(move |s| (i, s)))
        .collect();
    let threads = if opts.jobs == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.jobs
    }
    .clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<RunResult, String>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let run_opts = RunOptions {
        search_path: opts.search_path.clone(),
        metrics: opts.metrics,
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(p, seed)) = jobs.get(k) else {
                    return;
                };
                let point = &file.points[p];
                // A panic in a run (a plugin's, say) costs that run, not the others.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_sim(&file.path, point, seed, &run_opts)
                }))
                .unwrap_or_else(|_| Err("the run panicked".into()))
                .map_err(|e| format!("{} seed {seed}: {e}", point.label));
                if let Ok(mut all) = results.lock() {
                    all[k] = Some(r);
                }
            });
        }
    });
    let mut runs = Vec::new();
    for r in results.into_inner().unwrap_or_default() {
        runs.push(r.unwrap_or_else(|| Err("a run did not finish".into()))?);
    }
    if opts.kernel {
        super::kernel::available()?;
        for (p, seed) in &jobs {
            let r =
                super::kernel::run_kernel_with(&file.path, &file.points[*p], *seed, opts.metrics)
                    .map_err(|e| format!("{} seed {seed} (kernel): {e}", file.points[*p].label))?;
            runs.push(r);
        }
    }
    for r in &mut runs {
        if r.scenario.is_empty() {
            r.scenario = file.name.clone();
        }
    }
    let mut points = Vec::new();
    for engine in [Engine::Plugtcp, Engine::Kernel] {
        for p in &file.points {
            let of: Vec<&RunResult> = runs
                .iter()
                .filter(|r| r.engine == engine && r.point == p.label)
                .collect();
            if !of.is_empty() {
                points.push(PointSummary::of(&of, p.values.clone()));
            }
        }
    }
    let source = std::fs::read_to_string(&file.path).unwrap_or_default();
    let first = file.points.first().map(|p| &p.scenario);
    let results = LabResults {
        scenario: file.name.clone(),
        description: first.map_or_else(String::new, |s| s.description.clone()),
        source,
        overrides: opts.sets.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        runs,
        points,
    };
    if let Some(dir) = &opts.out {
        write_all(dir, &results)?;
    }
    Ok(results)
}

/// Writes the CSV, JSON, plots and report into `dir`.
pub fn write_all(dir: &Path, r: &LabResults) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    super::output::write_results(dir, r)?;
    super::report::write_report(dir, r)?;
    Ok(())
}

/// The summary table printed at the end of `lab run`: one row per point and engine.
pub fn render_table(r: &LabResults) -> String {
    let mut out = format!("scenario: {}\n", r.scenario);
    out.push_str(
        "| point | engine | seeds | utilisation | Jain | delay p50/p95/p99 (ms) | loss | retransmits | goodput per flow (Mbit/s) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for p in &r.points {
        let goodputs: Vec<String> = p
            .flow_goodput_mbps
            .iter()
            .map(|s| format!("{:.2}", s.mean))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {:.1}% ({:.1}-{:.1}) | {:.3} | {:.2} / {:.2} / {:.2} | {:.3}% | {:.0} | {} |\n",
            p.point,
            p.engine.name(),
            p.seeds.len(),
            p.utilisation.mean * 100.0,
            p.utilisation.min * 100.0,
            p.utilisation.max * 100.0,
            p.jain.mean,
            p.delay_p50_ms.mean,
            p.delay_p95_ms.mean,
            p.delay_p99_ms.mean,
            p.loss_rate.mean * 100.0,
            p.retransmits.mean,
            goodputs.join(" "),
        ));
    }
    for p in &r.points {
        for (flow, why) in &p.flagged {
            out.push_str(&format!(
                "warning: {} ({}, {}): flow {flow} was limited by its {why}, not its CC \
                 (buffers auto-size as FreeBSD's, to about 4/3 of the path's BDP: raise \
                 recvspace and sendspace in the scenario's [sysctls])\n",
                p.point,
                p.engine.name(),
                r.scenario
            ));
        }
    }
    out
}
