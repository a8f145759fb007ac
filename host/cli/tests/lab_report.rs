//! The lab's results directory and `report.html` from synthetic but plausible results (two
//! sweep points, two seeds, two flows, one bottleneck; the first point run by plugtcp and by
//! the kernel): the files are there, and the report renders in headless Chromium with its
//! titles, one image per plot and visible plots.

#[path = "common/chromium.rs"]
mod chromium;

use plugtcp_cli::lab::output::write_results;
use plugtcp_cli::lab::plots::all_plots;
use plugtcp_cli::lab::report::write_report;
use plugtcp_cli::lab::results::*;

const SCENARIO: &str = "cubic-vs-bbr-dumbbell";
const POINTS: [(&str, &str); 2] = [
    ("cc=cubic queue=1bdp", "cubic"),
    ("cc=bbr queue=1bdp", "bbr"),
];
const SOURCE: &str = r#"name = "cubic-vs-bbr-dumbbell"
description = "Two flows share a 50 Mbit/s bottleneck <with a 1 BDP queue> & compete."
duration = "10s"
repetitions = 2

[[link]]
rate = "50Mbit"
delay = "10ms"

[[flow]]
cc = "cubic"

[[flow]]
cc = "newreno"
start = "1s"
size = "20MB"

[sweep]
"flow.0.cc" = ["cubic", "bbr"]
"#;

/// One run: 10 s sampled every 100 ms. Flow 0 (the swept CC) ramps up and saws (cubic) or
/// stays flat and paced (bbr); flow 1 (newreno, sized) joins at 1 s and finishes at ~7 s;
/// the queue saws between empty and a BDP, dropping at each peak.
fn run(point: usize, seed: u64, engine: Engine) -> RunResult {
    let (label, cc) = POINTS[point];
    let bbr = cc == "bbr";
    let stack = if bbr { "bbr" } else { "base" };
    // The kernel's runs are a little different (real time, its own CUBIC).
    let kernel = if engine == Engine::Kernel { 0.9 } else { 0.0 };
    let jitter = |t: f64, k: f64| ((t * 3.1 + seed as f64 * 1.7 + k + kernel).sin() + 1.0) / 2.0;
    let mut flow_series = Vec::new();
    let mut queue_series = Vec::new();
    let (mut drops, mut r0, mut r1) = (0u64, 0u64, 0u64);
    let fct = 6.5 + seed as f64 * 0.3;
    for i in 1..=100 {
        let t = i as f64 * 0.1;
        let saw = (t / 2.0).fract();
        let backlog = if bbr {
            8_000.0 + 4_000.0 * jitter(t, 0.0)
        } else {
            62_500.0 * saw
        };
        if !bbr && saw > 0.94 {
            drops += 3;
            r0 += 2;
            r1 += 1;
        }
        let delay_ms = backlog * 8.0 / 50e6 * 1000.0;
        let ramp = (t / 1.5).min(1.0);
        let g1 = if t >= 1.0 && t <= fct {
            20.0 + 3.0 * jitter(t, 1.0)
        } else {
            0.0
        };
        let g0 = (ramp * 48.0 - g1).max(2.0) - 2.0 * jitter(t, 2.0);
        let cwnd0 = if bbr {
            70_000.0
        } else {
            40_000.0 + 60_000.0 * saw
        } * ramp;
        flow_series.push(FlowSample {
            t,
            flow: 0,
            goodput_mbps: g0,
            cwnd_bytes: cwnd0 as u64,
            srtt_ms: 20.0 + delay_ms,
            pacing_mbps: if bbr && engine == Engine::Plugtcp {
                g0 * 1.05
            } else {
                0.0
            },
            retransmits: r0,
            inflight_bytes: (cwnd0 * 0.9) as u64,
            rwnd_bytes: 262_144,
        });
        let cwnd1 = if t >= 1.0 && t <= fct {
            30_000.0 + 25_000.0 * saw
        } else {
            0.0
        };
        flow_series.push(FlowSample {
            t,
            flow: 1,
            goodput_mbps: g1,
            cwnd_bytes: cwnd1 as u64,
            srtt_ms: if t >= 1.0 { 20.0 + delay_ms } else { 0.0 },
            pacing_mbps: 0.0,
            retransmits: r1,
            inflight_bytes: (cwnd1 * 0.85) as u64,
            rwnd_bytes: 65_535,
        });
        queue_series.push(QueueSample {
            t,
            link: 0,
            backlog_bytes: backlog as u64,
            backlog_packets: (backlog / 1500.0) as u64,
            drops,
            marks: 0,
            delay_ms,
        });
    }
    let mean = |f: usize| {
        let v: Vec<f64> = flow_series
            .iter()
            .filter(|s| s.flow == f && s.goodput_mbps > 0.0)
            .map(|s| s.goodput_mbps)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let (m0, m1) = (mean(0), mean(1));
    let mut sorted: Vec<f64> = queue_series.iter().map(|q| q.delay_ms).collect();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    // Point 1, seed 2: the sized flow ran out of receive window (a 64 KiB buffer).
    let rwnd_limited = point == 1 && seed == 2;
    let flows = vec![
        FlowSummary {
            name: format!("{cc}/{stack}#1"),
            cc: cc.into(),
            stack: stack.into(),
            rtt_ms: 20.0,
            start_s: 0.0,
            bytes: (m0 * 1e6 / 8.0 * 10.0) as u64,
            goodput_mbps: m0,
            retransmits: r0,
            fct_s: None,
            intact: true,
            queue_delay_p50_ms: pct(0.5),
            queue_delay_p95_ms: pct(0.95),
            limited_by: Limit::Cc,
            rwnd_limited: 0.0,
            sndbuf_limited: 0.0,
        },
        FlowSummary {
            name: "newreno/base#2".into(),
            cc: "newreno".into(),
            stack: "base".into(),
            rtt_ms: 20.0,
            start_s: 1.0,
            bytes: 20_000_000,
            goodput_mbps: m1,
            retransmits: r1,
            fct_s: Some(fct - 1.0),
            intact: true,
            queue_delay_p50_ms: pct(0.5),
            queue_delay_p95_ms: pct(0.95),
            limited_by: if rwnd_limited {
                Limit::ReceiveWindow
            } else {
                Limit::Cc
            },
            rwnd_limited: if rwnd_limited { 0.62 } else { 0.0 },
            sndbuf_limited: 0.0,
        },
    ];
    let utilisation =
        0.93 + 0.02 * jitter(1.0, point as f64) - if bbr { 0.0 } else { 0.03 } - kernel * 0.02;
    let (a, b) = (m0, m1);
    RunResult {
        scenario: SCENARIO.into(),
        point: label.into(),
        seed,
        engine,
        duration_s: 10.0,
        flows,
        links: vec![LinkSummary {
            name: "bottleneck".into(),
            qdisc: "drop_tail".into(),
            capacity_bits: 50e6 * 10.0,
            delivered_bits: 50e6 * 10.0 * utilisation,
            utilisation,
            limit_bytes: 62_500,
            max_backlog_bytes: 62_500,
            delay_p50_ms: pct(0.5),
            delay_p95_ms: pct(0.95),
            delay_p99_ms: pct(0.99),
            packets: 40_000,
            drops,
            random_losses: 0,
            marks: 0,
        }],
        bottleneck: 0,
        jain: (a + b).powi(2) / (2.0 * (a * a + b * b)),
        loss_rate: drops as f64 / 40_000.0,
        retransmits: r0 + r1,
        flow_series,
        queue_series,
    }
}

fn synthetic() -> LabResults {
    let mut runs = Vec::new();
    for (p, engines) in [
        (0, &[Engine::Plugtcp, Engine::Kernel][..]),
        (1, &[Engine::Plugtcp]),
    ] {
        for e in engines {
            for seed in [1, 2] {
                runs.push(run(p, seed, *e));
            }
        }
    }
    let mut points = Vec::new();
    for (label, cc) in POINTS {
        for e in [Engine::Plugtcp, Engine::Kernel] {
            let rs: Vec<&RunResult> = runs
                .iter()
                .filter(|r| r.point == label && r.engine == e)
                .collect();
            if !rs.is_empty() {
                points.push(PointSummary::of(
                    &rs,
                    vec![
                        ("flow.0.cc".into(), cc.into()),
                        ("link.queue".into(), "1bdp".into()),
                    ],
                ));
            }
        }
    }
    LabResults {
        overrides: Vec::new(),
        scenario: SCENARIO.into(),
        description: "Two flows share a 50 Mbit/s bottleneck <with a 1 BDP queue> & compete."
            .into(),
        source: SOURCE.into(),
        runs,
        points,
    }
}

#[test]
fn results_and_report_render() {
    let r = synthetic();
    let dir = chromium::temp_dir("lab-report");
    write_results(&dir, &r).unwrap();
    let report = write_report(&dir, &r).unwrap();
    assert_eq!(report, dir.join("report.html"));

    // The results directory.
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3, "{csv}");
    for (slug, engine, seed) in [
        ("cc-cubic_queue-1bdp", "plugtcp", 1),
        ("cc-cubic_queue-1bdp", "kernel", 2),
        ("cc-bbr_queue-1bdp", "plugtcp", 2),
    ] {
        let rd = dir.join(format!("runs/{slug}/{engine}-seed{seed}"));
        let flows = std::fs::read_to_string(rd.join("flows.csv")).unwrap();
        assert_eq!(flows.lines().count(), 1 + 200);
        let queue = std::fs::read_to_string(rd.join("queue.csv")).unwrap();
        assert_eq!(queue.lines().count(), 1 + 100);
        assert!(rd.join("summary.json").is_file());
    }

    // The report's text.
    let html = std::fs::read_to_string(&report).unwrap();
    let plots = all_plots(&r).unwrap();
    // 3 bars + 2 overlays x 2 engines; per run 7 plots (+ pacing for bbr on plugtcp).
    assert_eq!(plots.len(), 3 + 4 + 6 * 7 + 2);
    for p in &plots {
        assert!(
            dir.join("plots").join(p.file_name()).is_file(),
            "plots/{}",
            p.file_name()
        );
        assert!(html.contains(&format!("id=\"{}\"", p.id)));
    }
    assert!(html.contains("&lt;with a 1 BDP queue&gt; &amp; compete"));
    assert!(html.matches("<table class=\"summary").count() >= 2);
    let warnings =
        &html[html.find("id=\"warnings\"").unwrap()..html.find("id=\"comparison\"").unwrap()];
    assert!(warnings.contains("class=\"warnings\""));
    assert!(warnings.contains("newreno/base#2") && warnings.contains("receive window"));
    assert!(
        warnings.contains("seed 2") && warnings.contains("62.0%"),
        "{warnings}"
    );

    let mut titles: Vec<&str> = vec![SCENARIO, "utilisation", "Warnings", "Scenario file"];
    titles.extend(POINTS.iter().map(|p| p.0));
    titles.extend(plots.iter().map(|p| p.caption.as_str()));
    let rendered = chromium::check_report_in_chromium(&report, &titles);
    eprintln!(
        "report.html: {} bytes, {} plots{}",
        html.len(),
        plots.len(),
        if rendered {
            ", rendered in chromium"
        } else {
            ""
        }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
