//! The results directory of a lab run, as files a researcher reads with any tool:
//!
//! - `summary.json`: the [`LabResults`] (every run's summary and every point's spread),
//! - `summary.csv`: one row per sweep point and engine (the spreadsheet view),
//! - `runs/<point>/<engine>-seed<N>/`: `flows.csv` and `queue.csv` (the time series) and
//!   `summary.json` (that run's summary).
//!
//! `<point>` is the point's label made safe as a file name ([`point_slugs`]). Numbers are
//! written in plain decimal (no locale, no thousands separators); a value that is not finite
//! is an empty cell.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::results::{LabResults, RunResult};

/// Writes `summary.json`, `summary.csv` and the per-run directories under `dir` (created if
/// missing). Errors name the path.
pub fn write_results(dir: &Path, r: &LabResults) -> Result<(), String> {
    mkdir(dir)?;
    write_file(&dir.join("summary.json"), json(r)?.as_bytes())?;
    write_file(&dir.join("summary.csv"), summary_csv(r).as_bytes())?;
    let slugs = point_slugs(r);
    for run in &r.runs {
        let rd = run_dir(dir, slug_of(&slugs, &run.point), run);
        mkdir(&rd)?;
        write_file(&rd.join("flows.csv"), flows_csv(run).as_bytes())?;
        write_file(&rd.join("queue.csv"), queue_csv(run).as_bytes())?;
        write_file(&rd.join("summary.json"), json(run)?.as_bytes())?;
    }
    Ok(())
}

/// The header of `flows.csv`.
pub const FLOWS_HEADER: &str =
    "t,flow,name,goodput_mbps,cwnd_bytes,srtt_ms,pacing_mbps,retransmits,inflight_bytes,rwnd_bytes";
/// The header of `queue.csv`.
pub const QUEUE_HEADER: &str = "t,link,name,backlog_bytes,backlog_packets,drops,marks,delay_ms";

/// Where one run's files go: `dir/runs/<slug>/<engine>-seed<N>`.
pub fn run_dir(dir: &Path, slug: &str, run: &RunResult) -> PathBuf {
    dir.join("runs")
        .join(slug)
        .join(format!("{}-seed{}", run.engine.name(), run.seed))
}

/// The sweep points' labels in the order the report and the CSV list them: the order of
/// [`LabResults::points`], then any label only a run carries.
pub fn point_labels(r: &LabResults) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in r
        .points
        .iter()
        .map(|p| &p.point)
        .chain(r.runs.iter().map(|x| &x.point))
    {
        if !v.contains(l) {
            v.push(l.clone());
        }
    }
    v
}

/// `(label, slug)` for every point of [`point_labels`]: the label made a safe file name
/// ([`slug`]), made unique (`-2`, `-3`, ...) when two labels give the same one, compared
/// without case so that case-insensitive file systems keep them apart too.
pub fn point_slugs(r: &LabResults) -> Vec<(String, String)> {
    let mut used: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for label in point_labels(r) {
        let base = slug(&label);
        let mut s = base.clone();
        let mut n = 2;
        while used.contains(&s.to_lowercase()) {
            s = format!("{base}-{n}");
            n += 1;
        }
        used.push(s.to_lowercase());
        out.push((label, s));
    }
    out
}

/// `label` as one safe path component: letters, digits, `-`, `_`, `.` and `+` stay, `=`
/// becomes `-` (`cc=cubic` → `cc-cubic`), runs of anything else one `_`; never empty, never
/// starting with `.` or `_`, at most 100 bytes.
pub fn slug(label: &str) -> String {
    let mut s = String::new();
    for c in label.chars() {
        let c = match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' | '+' => c,
            '=' => '-',
            _ => '_',
        };
        if !(c == '_' && s.ends_with('_')) {
            s.push(c);
        }
        if s.len() >= 100 {
            break;
        }
    }
    let s = s.trim_start_matches(['.', '_']).trim_end_matches('_');
    if s.is_empty() {
        "point".to_string()
    } else {
        s.to_string()
    }
}

pub(crate) fn slug_of<'a>(slugs: &'a [(String, String)], label: &str) -> &'a str {
    slugs
        .iter()
        .find(|(l, _)| l == label)
        .map_or("point", |(_, s)| s.as_str())
}

/// `summary.csv`: point, engine, seeds, one column per sweep key, then the point's metrics
/// (utilisation as a fraction, delays in ms, loss as a fraction; means over seeds unless the
/// column says min/max), per-flow goodput means (`flow<i>_goodput_mbps`), per-flow mean
/// completion times of sized flows (`flow<i>_fct_s`, only if some flow is sized) and the
/// flows flagged as limited by something other than their CC (`name: limit; ...`).
pub fn summary_csv(r: &LabResults) -> String {
    let mut keys: Vec<&str> = Vec::new();
    for p in &r.points {
        for (k, _) in &p.values {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    let nflows = r
        .points
        .iter()
        .map(|p| p.flow_goodput_mbps.len())
        .max()
        .unwrap_or(0);
    let any_fct = r
        .points
        .iter()
        .any(|p| p.flow_fct_s.iter().any(Option::is_some));
    let mut head: Vec<String> = vec!["point".into(), "engine".into(), "seeds".into()];
    head.extend(keys.iter().map(|k| k.to_string()));
    for h in [
        "utilisation_mean",
        "utilisation_min",
        "utilisation_max",
        "jain_mean",
        "jain_min",
        "jain_max",
        "delay_p50_ms",
        "delay_p95_ms",
        "delay_p99_ms",
        "loss_rate",
        "retransmits",
    ] {
        head.push(h.into());
    }
    head.extend((0..nflows).map(|i| format!("flow{i}_goodput_mbps")));
    if any_fct {
        head.extend((0..nflows).map(|i| format!("flow{i}_fct_s")));
    }
    head.push("flagged".into());
    let mut out = csv_row(head.iter().map(String::as_str));

    let labels = point_labels(r);
    let mut points: Vec<_> = r.points.iter().collect();
    // Points in label order, plugtcp before kernel (stable: the given order otherwise).
    points.sort_by_key(|p| {
        (
            labels.iter().position(|l| *l == p.point),
            p.engine.name() != "plugtcp",
        )
    });
    for p in points {
        let mut row: Vec<String> = vec![
            p.point.clone(),
            p.engine.name().into(),
            p.seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ];
        for k in &keys {
            row.push(
                p.values
                    .iter()
                    .find(|(pk, _)| pk == k)
                    .map_or_else(String::new, |(_, v)| v.clone()),
            );
        }
        for x in [
            p.utilisation.mean,
            p.utilisation.min,
            p.utilisation.max,
            p.jain.mean,
            p.jain.min,
            p.jain.max,
            p.delay_p50_ms.mean,
            p.delay_p95_ms.mean,
            p.delay_p99_ms.mean,
            p.loss_rate.mean,
            p.retransmits.mean,
        ] {
            row.push(num(x));
        }
        for i in 0..nflows {
            row.push(
                p.flow_goodput_mbps
                    .get(i)
                    .map_or_else(String::new, |s| num(s.mean)),
            );
        }
        if any_fct {
            for i in 0..nflows {
                row.push(
                    p.flow_fct_s
                        .get(i)
                        .and_then(|f| f.as_ref())
                        .map_or_else(String::new, |s| num(s.mean)),
                );
            }
        }
        row.push(
            p.flagged
                .iter()
                .map(|(f, why)| format!("{f}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
        );
        out.push_str(&csv_row(row.iter().map(String::as_str)));
    }
    out
}

/// `flows.csv` of one run: one row per sample and flow, in the order sampled.
pub fn flows_csv(run: &RunResult) -> String {
    let mut out = String::with_capacity(64 * (run.flow_series.len() + 1));
    out.push_str(FLOWS_HEADER);
    out.push('\n');
    for s in &run.flow_series {
        let name = run.flows.get(s.flow).map_or("", |f| f.name.as_str());
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            num(s.t),
            s.flow,
            csv_field(name),
            num(s.goodput_mbps),
            s.cwnd_bytes,
            num(s.srtt_ms),
            num(s.pacing_mbps),
            s.retransmits,
            s.inflight_bytes,
            s.rwnd_bytes
        );
    }
    out
}

/// `queue.csv` of one run: one row per sample and link.
pub fn queue_csv(run: &RunResult) -> String {
    let mut out = String::with_capacity(48 * (run.queue_series.len() + 1));
    out.push_str(QUEUE_HEADER);
    out.push('\n');
    for s in &run.queue_series {
        let name = run.links.get(s.link).map_or("", |l| l.name.as_str());
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            num(s.t),
            s.link,
            csv_field(name),
            s.backlog_bytes,
            s.backlog_packets,
            s.drops,
            s.marks,
            num(s.delay_ms)
        );
    }
    out
}

/// A number for a CSV cell: integers without a fraction, others with up to 9 decimals
/// (trailing zeros dropped), tiny ones in exponent form; not finite → empty.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return String::new();
    }
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    if x.abs() < 1e-4 {
        return format!("{x:e}");
    }
    let s = format!("{x:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// One CSV field, quoted when it has to be (RFC 4180).
pub(crate) fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

fn csv_row<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let mut line = fields.map(csv_field).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, String> {
    let mut s = serde_json::to_string_pretty(v).map_err(|e| format!("json: {e}"))?;
    s.push('\n');
    Ok(s)
}

pub(crate) fn mkdir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::results::*;

    fn run(point: &str, seed: u64, engine: Engine, samples: usize) -> RunResult {
        let flows = vec![
            FlowSummary {
                name: "cubic/base#1".into(),
                cc: "cubic".into(),
                stack: "base".into(),
                rtt_ms: 20.0,
                start_s: 0.0,
                bytes: 1_000_000,
                goodput_mbps: 4.5,
                retransmits: 3,
                fct_s: None,
                intact: true,
                queue_delay_p50_ms: 5.0,
                queue_delay_p95_ms: 9.0,
                limited_by: Limit::Cc,
                rwnd_limited: 0.0,
                sndbuf_limited: 0.0,
            },
            FlowSummary {
                name: "bbr, \"fast\"".into(),
                cc: "bbr".into(),
                stack: "bbr".into(),
                rtt_ms: 40.0,
                start_s: 1.0,
                bytes: 500_000,
                goodput_mbps: 3.5,
                retransmits: 1,
                fct_s: Some(2.5),
                intact: true,
                queue_delay_p50_ms: 5.0,
                queue_delay_p95_ms: 9.0,
                limited_by: Limit::ReceiveWindow,
                rwnd_limited: 0.6,
                sndbuf_limited: 0.0,
            },
        ];
        let link = LinkSummary {
            name: "bottleneck".into(),
            qdisc: "drop_tail".into(),
            capacity_bits: 1e8,
            delivered_bits: 9e7,
            utilisation: 0.9,
            limit_bytes: 100_000,
            max_backlog_bytes: 90_000,
            delay_p50_ms: 5.0,
            delay_p95_ms: 9.0,
            delay_p99_ms: 10.0,
            packets: 10_000,
            drops: 12,
            random_losses: 0,
            marks: 0,
        };
        let mut flow_series = Vec::new();
        let mut queue_series = Vec::new();
        for i in 0..samples {
            let t = (i + 1) as f64 * 0.1;
            for f in 0..2 {
                flow_series.push(FlowSample {
                    t,
                    flow: f,
                    goodput_mbps: 4.0,
                    cwnd_bytes: 30_000,
                    srtt_ms: 25.0,
                    pacing_mbps: 0.0,
                    retransmits: i as u64,
                    inflight_bytes: 20_000,
                    rwnd_bytes: 65_535,
                });
            }
            queue_series.push(QueueSample {
                t,
                link: 0,
                backlog_bytes: 5_000,
                backlog_packets: 4,
                drops: i as u64,
                marks: 0,
                delay_ms: 3.3,
            });
        }
        RunResult {
            scenario: "unit".into(),
            point: point.into(),
            seed,
            engine,
            duration_s: samples as f64 * 0.1,
            flows,
            links: vec![link],
            bottleneck: 0,
            jain: 0.98,
            loss_rate: 0.001,
            retransmits: 4,
            flow_series,
            queue_series,
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        std::env::temp_dir().join(format!(
            "plugtcp-output-{tag}-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    #[test]
    fn slugs_are_safe_and_unique() {
        assert_eq!(slug("cc=cubic queue=1bdp"), "cc-cubic_queue-1bdp");
        assert_eq!(slug("../../etc"), "etc");
        assert_eq!(slug(""), "point");
        assert_eq!(slug("///"), "point");
        assert!(!slug("..").starts_with('.'));
        assert!(slug(&"x".repeat(300)).len() <= 100);
        let r = LabResults {
            overrides: Vec::new(),
            scenario: "s".into(),
            description: String::new(),
            source: String::new(),
            runs: vec![
                run("a/b", 1, Engine::Plugtcp, 0),
                run("a_b", 1, Engine::Plugtcp, 0),
                run("A b", 1, Engine::Plugtcp, 0),
            ],
            points: vec![],
        };
        let s: Vec<String> = point_slugs(&r).into_iter().map(|(_, s)| s).collect();
        assert_eq!(s, ["a_b", "a_b-2", "A_b-3"]);
    }

    #[test]
    fn numbers() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.30000000000000004), "0.3");
        assert_eq!(num(-2.5), "-2.5");
        assert_eq!(num(f64::NAN), "");
        assert_eq!(num(1e-7), "1e-7");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn writes_and_reads_back() {
        let runs = vec![
            run("cc=cubic", 1, Engine::Plugtcp, 20),
            run("cc=cubic", 2, Engine::Plugtcp, 20),
            run("cc=cubic", 1, Engine::Kernel, 15),
            run("cc=bbr", 1, Engine::Plugtcp, 0),
        ];
        let mut points = Vec::new();
        for (label, engine) in [
            ("cc=cubic", Engine::Plugtcp),
            ("cc=cubic", Engine::Kernel),
            ("cc=bbr", Engine::Plugtcp),
        ] {
            let rs: Vec<&RunResult> = runs
                .iter()
                .filter(|r| r.point == label && r.engine == engine)
                .collect();
            let v = label.split_once('=').unwrap();
            points.push(PointSummary::of(
                &rs,
                vec![
                    ("flow.cc".into(), v.1.into()),
                    ("link.queue".into(), "1bdp".into()),
                ],
            ));
        }
        let r = LabResults {
            overrides: Vec::new(),
            scenario: "unit".into(),
            description: "d".into(),
            source: "name = \"unit\"\n".into(),
            runs,
            points,
        };
        let dir = temp_dir("rw");
        write_results(&dir, &r).unwrap();

        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(back["runs"].as_array().unwrap().len(), 4);
        assert_eq!(back["points"].as_array().unwrap().len(), 3);
        assert_eq!(back["scenario"], "unit");

        let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + 3, "{csv}");
        assert!(lines[0].starts_with(
            "point,engine,seeds,flow.cc,link.queue,utilisation_mean,utilisation_min,\
             utilisation_max,jain_mean"
        ));
        assert!(lines[0].contains("delay_p95_ms,delay_p99_ms,loss_rate,retransmits"));
        assert!(lines[0].contains("flow0_goodput_mbps,flow1_goodput_mbps"));
        assert!(lines[0].contains("flow1_fct_s"));
        assert!(lines[0].ends_with(",flagged"));
        assert!(lines[1].starts_with("cc=cubic,plugtcp,1 2,cubic,1bdp,0.9,"));
        assert!(lines[2].starts_with("cc=cubic,kernel,1,cubic,"));
        assert!(lines[3].starts_with("cc=bbr,plugtcp,1,bbr,"));
        assert!(
            lines[1].ends_with("\"bbr, \"\"fast\"\": receive window\""),
            "{}",
            lines[1]
        );
        let ncols = lines[0].split(',').count();
        assert_eq!(lines[2].split(',').count(), ncols + 1); // one quoted comma in "flagged"

        let rd = dir.join("runs/cc-cubic/plugtcp-seed2");
        let flows = std::fs::read_to_string(rd.join("flows.csv")).unwrap();
        assert_eq!(flows.lines().next().unwrap(), FLOWS_HEADER);
        assert_eq!(flows.lines().count(), 1 + 40);
        assert!(flows
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("0.1,0,cubic/base#1,4,30000,25,0,0,"));
        assert!(flows
            .lines()
            .nth(2)
            .unwrap()
            .contains(",\"bbr, \"\"fast\"\"\","));
        let queue = std::fs::read_to_string(rd.join("queue.csv")).unwrap();
        assert_eq!(queue.lines().next().unwrap(), QUEUE_HEADER);
        assert_eq!(queue.lines().count(), 1 + 20);
        assert_eq!(
            queue.lines().nth(3).unwrap(),
            "0.3,0,bottleneck,5000,4,2,0,3.3"
        );
        let one: serde_json::Value =
            serde_json::from_slice(&std::fs::read(rd.join("summary.json")).unwrap()).unwrap();
        assert_eq!(one["seed"], 2);
        assert_eq!(one["engine"], "plugtcp");
        assert!(one.get("flow_series").is_none());

        let kq = std::fs::read_to_string(dir.join("runs/cc-cubic/kernel-seed1/queue.csv")).unwrap();
        assert_eq!(kq.lines().count(), 1 + 15);
        // A run without samples still gets its files, headers only.
        let empty = dir.join("runs/cc-bbr/plugtcp-seed1");
        assert_eq!(
            std::fs::read_to_string(empty.join("flows.csv")).unwrap(),
            format!("{FLOWS_HEADER}\n")
        );
        assert!(empty.join("summary.json").is_file());

        // Errors name the path.
        let blocker = dir.join("summary.csv");
        let e = write_results(&blocker.join("sub"), &r).unwrap_err();
        assert!(e.contains(&blocker.display().to_string()), "{e}");

        std::fs::remove_dir_all(&dir).unwrap();
    }
}
