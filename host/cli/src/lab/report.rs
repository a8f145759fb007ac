//! `report.html`: one page a researcher opens offline and can mail around. Everything is in
//! the file: the plots as base64 `data:` URIs, the style inline, no script and nothing
//! fetched. The same plots are also written as PNG files under `plots/`, so a README or a
//! paper draft can link one.
//!
//! Layout: title and description; per point a summary table (mean (min–max) over seeds, per
//! engine); the flows flagged as limited by their receive window or send buffer, highlighted
//! (their numbers measure the buffer, not the CC); the plots comparing the points; per point
//! its runs' table and the plots of its first seed (other seeds folded in `<details>`); the
//! scenario file.
//!
//! Every plot is `<figure><img class="plot" id=…><figcaption>` with the caption as alt text;
//! the tables have `class="summary"` (per point) and `class="runs"`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::output::{mkdir, point_labels, point_slugs, slug_of, write_file};
use super::plots::{comparison_plots, point_name, run_plots, runs_in_order, Plot};
use super::results::{Engine, LabResults, Limit, PointSummary, RunResult, Spread};

/// Up to this many plots the report shows every seed's (the other seeds folded); past it
/// only the first seed's of each point and engine, which keeps a large sweep's page a few
/// megabytes (a plot is 20–30 kB).
pub const MAX_PLOTS_WITH_ALL_SEEDS: usize = 150;

/// Draws the plots, writes them to `dir/plots/<id>.png` (removing PNG files an earlier
/// report left there, so the directory holds exactly this report's plots) and writes
/// `dir/report.html`. Returns the report's path; errors name the path.
pub fn write_report(dir: &Path, r: &LabResults) -> Result<PathBuf, String> {
    mkdir(dir)?;
    let plots_dir = dir.join("plots");
    mkdir(&plots_dir)?;
    let stale =
        std::fs::read_dir(&plots_dir).map_err(|e| format!("{}: {e}", plots_dir.display()))?;
    for entry in stale.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "png") {
            std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }

    let comparison = comparison_plots(r)?;
    let slugs = point_slugs(r);
    let runs = runs_in_order(r);
    // Each run has at most 8 plots; past the budget only the first seed's are drawn.
    let all_seeds = comparison.len() + 8 * runs.len() <= MAX_PLOTS_WITH_ALL_SEEDS;
    let mut per_run: Vec<(&RunResult, Vec<Plot>)> = Vec::new();
    for run in runs {
        let first = !per_run
            .iter()
            .any(|(x, _)| x.point == run.point && x.engine == run.engine);
        let plots = if first || all_seeds {
            run_plots(run, slug_of(&slugs, &run.point))?
        } else {
            Vec::new()
        };
        per_run.push((run, plots));
    }
    for p in comparison
        .iter()
        .chain(per_run.iter().flat_map(|(_, ps)| ps))
    {
        write_file(&plots_dir.join(p.file_name()), &p.png)?;
    }
    let html = render_html(r, &comparison, &per_run);
    let path = dir.join("report.html");
    write_file(&path, html.as_bytes())?;
    Ok(path)
}

/// `s` safe as HTML text and as an attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
  margin: 0 auto; max-width: 1060px; padding: 1.2rem 1.5rem 3rem; color: #1d1d1f; background: #fff;
  line-height: 1.45; }
h1 { font-size: 1.9rem; margin: .2rem 0 .3rem; }
h2 { font-size: 1.4rem; border-bottom: 2px solid #4e79a7; padding-bottom: .2rem; margin-top: 2.2rem; }
h3 { font-size: 1.15rem; margin: 1.6rem 0 .4rem; }
h4 { font-size: 1rem; margin: 1.2rem 0 .3rem; color: #333; }
a { color: #2a5d95; }
.description { white-space: pre-line; font-size: 1.05rem; margin: .3rem 0 .6rem; }
.meta, .note { color: #555; font-size: .9rem; }
nav.toc { font-size: .95rem; padding: .5rem .8rem; background: #f4f6f9; border-radius: 4px; }
nav.toc a { margin-right: .9rem; }
.scroll { overflow-x: auto; }
table.summary, table.runs { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .88rem;
  font-variant-numeric: tabular-nums; }
table.summary th, table.summary td, table.runs th, table.runs td { border: 1px solid #d3d7dd;
  padding: .28rem .55rem; text-align: left; vertical-align: top; }
th { background: #eef2f7; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f9fafb; }
.values code { background: #f1f3f6; padding: 0 .25rem; border-radius: 3px; }
.flag { color: #9a4b00; font-weight: 600; }
.warnings { background: #fff4e5; border: 1px solid #f0b35a; border-left: 6px solid #e8890c;
  padding: .5rem 1rem; border-radius: 4px; }
.warnings li { margin: .3rem 0; }
.warnings li.error { color: #a11; }
.ok { background: #eef8ee; border-left: 6px solid #59a14f; padding: .5rem 1rem; border-radius: 4px; }
figure.plot-figure { margin: 1rem 0 1.6rem; }
img.plot { display: block; max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { font-size: .9rem; color: #444; margin-top: .3rem; }
details { margin: .6rem 0 1.2rem; padding: .3rem .6rem; border: 1px solid #e3e3e3; border-radius: 4px; }
summary { cursor: pointer; font-weight: 600; }
pre.source { background: #f6f8fa; border: 1px solid #ddd; padding: .8rem; overflow-x: auto;
  font-size: .85rem; line-height: 1.35; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
footer { margin-top: 2.5rem; font-size: .85rem; color: #666; }
@media print { details > *:not(summary) { display: block; } img.plot { break-inside: avoid; } }
"#;

fn render_html(r: &LabResults, comparison: &[Plot], per_run: &[(&RunResult, Vec<Plot>)]) -> String {
    let labels = point_labels(r);
    let slugs = point_slugs(r);
    let engines: Vec<&str> = [Engine::Plugtcp, Engine::Kernel]
        .into_iter()
        .filter(|e| {
            r.runs.iter().any(|x| x.engine == *e) || r.points.iter().any(|p| p.engine == *e)
        })
        .map(Engine::name)
        .collect();
    let title = if r.scenario.is_empty() {
        "lab run"
    } else {
        r.scenario.as_str()
    };
    let mut h = String::with_capacity(
        per_run
            .iter()
            .flat_map(|(_, ps)| ps)
            .chain(comparison)
            .map(|p| p.png.len() * 4 / 3 + 400)
            .sum::<usize>()
            + 64 * 1024,
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"plugtcp lab\">\n\
         <title>{} — plugtcp lab report</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(title)
    );
    let _ = writeln!(h, "<header>\n<h1 id=\"title\">{}</h1>", escape(title));
    if !r.description.trim().is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"description\">{}</p>",
            escape(r.description.trim())
        );
    }
    let _ = writeln!(
        h,
        "<p class=\"meta\">{} point{}, {} run{}; engines: {}.</p>\n</header>",
        labels.len(),
        plural(labels.len()),
        r.runs.len(),
        plural(r.runs.len()),
        if engines.is_empty() {
            "none".to_string()
        } else {
            engines.join(", ")
        }
    );
    h.push_str(
        "<nav class=\"toc\"><a href=\"#summary\">Summary</a><a href=\"#warnings\">Warnings</a>\
         <a href=\"#comparison\">Comparison</a><a href=\"#runs\">Runs</a>\
         <a href=\"#scenario\">Scenario file</a> Data: <a href=\"summary.csv\">summary.csv</a> \
         <a href=\"summary.json\">summary.json</a> <a href=\"runs/\">runs/</a></nav>\n",
    );

    // Summary tables.
    h.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n");
    h.push_str(
        "<p class=\"note\">Per point and engine: mean (min–max) over the seeds. Utilisation, \
         queueing delay and loss are the bottleneck link's; goodput is each flow's mean while it \
         was active; FCT is the completion time of sized flows.</p>\n",
    );
    if labels.is_empty() {
        h.push_str("<p>No runs.</p>\n");
    }
    for label in &labels {
        let slug = slug_of(&slugs, label);
        let points = points_of(r, label);
        let _ = writeln!(
            h,
            "<div class=\"point\" id=\"point-{}\">\n<h3>{}</h3>",
            escape(slug),
            escape(point_name(label))
        );
        if let Some(p) = points.first().filter(|p| !p.values.is_empty()) {
            let vals: Vec<String> = p
                .values
                .iter()
                .map(|(k, v)| format!("<code>{}</code> = <code>{}</code>", escape(k), escape(v)))
                .collect();
            let _ = writeln!(h, "<p class=\"values\">{}</p>", vals.join(", "));
        }
        if points.is_empty() {
            h.push_str("<p class=\"note\">No summary for this point.</p>\n</div>\n");
            continue;
        }
        summary_table(&mut h, &points);
        flows_table(&mut h, r, label, &points);
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");

    // Warnings.
    h.push_str("<section id=\"warnings\">\n<h2>Warnings</h2>\n");
    let warnings = warnings(r, &labels);
    if warnings.is_empty() {
        h.push_str(
            "<p class=\"ok\">No flow was limited by its receive window or send buffer, and every \
             flow's data arrived intact.</p>\n",
        );
    } else {
        let _ = writeln!(
            h,
            "<div class=\"warnings\" role=\"alert\">\n<p><strong>{} warning{}.</strong> A flow \
             limited by its receive window or send buffer did not run at the rate its \
             congestion control chose: its goodput measures the buffer, not the CC.</p>\n<ul>",
            warnings.len(),
            plural(warnings.len())
        );
        for (error, w) in &warnings {
            let _ = writeln!(
                h,
                "<li{}>{w}</li>",
                if *error { " class=\"error\"" } else { "" }
            );
        }
        h.push_str("</ul>\n</div>\n");
    }
    h.push_str("</section>\n");

    // Comparison plots.
    h.push_str("<section id=\"comparison\">\n<h2>Comparison of points</h2>\n");
    if comparison.is_empty() {
        h.push_str("<p class=\"note\">Nothing to compare.</p>\n");
    }
    for p in comparison {
        figure(&mut h, p);
    }
    h.push_str("</section>\n");

    // Runs.
    h.push_str("<section id=\"runs\">\n<h2>Runs</h2>\n");
    for label in &labels {
        let slug = slug_of(&slugs, label);
        let runs: Vec<&(&RunResult, Vec<Plot>)> =
            per_run.iter().filter(|(x, _)| x.point == *label).collect();
        let _ = writeln!(
            h,
            "<div class=\"point-runs\" id=\"runs-{}\">\n<h3>{}</h3>",
            escape(slug),
            escape(point_name(label))
        );
        if runs.is_empty() {
            h.push_str("<p class=\"note\">No runs.</p>\n</div>\n");
            continue;
        }
        runs_table(&mut h, slug, &runs);
        for engine in [Engine::Plugtcp, Engine::Kernel] {
            let mine: Vec<&(&RunResult, Vec<Plot>)> = runs
                .iter()
                .copied()
                .filter(|(x, _)| x.engine == engine)
                .collect();
            let Some((first, rest)) = mine.split_first() else {
                continue;
            };
            let _ = writeln!(h, "<h4>{}, seed {}</h4>", engine.name(), first.0.seed);
            for p in &first.1 {
                figure(&mut h, p);
            }
            let seeds: Vec<String> = rest.iter().map(|(x, _)| x.seed.to_string()).collect();
            if rest.iter().all(|(_, plots)| plots.is_empty()) && !rest.is_empty() {
                let _ = writeln!(
                    h,
                    "<p class=\"note\">The plots of the other seed{} ({}) are left out to keep \
                     this page small; their time series are in <code>runs/{}/</code>.</p>",
                    plural(rest.len()),
                    seeds.join(", "),
                    escape(slug)
                );
            } else if !rest.is_empty() {
                let _ = writeln!(
                    h,
                    "<details>\n<summary>{}: the other seed{} ({})</summary>",
                    engine.name(),
                    plural(rest.len()),
                    seeds.join(", ")
                );
                for (x, plots) in rest.iter().copied() {
                    let _ = writeln!(h, "<h4>{}, seed {}</h4>", engine.name(), x.seed);
                    for p in plots {
                        figure(&mut h, p);
                    }
                }
                h.push_str("</details>\n");
            }
        }
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");

    // Scenario file.
    h.push_str("<section id=\"scenario\">\n<h2>Scenario file</h2>\n");
    if r.source.trim().is_empty() {
        h.push_str("<p class=\"note\">Not recorded.</p>\n");
    } else {
        if !r.overrides.is_empty() {
            let _ = writeln!(
                h,
                "<p>Run with <code>{}</code>.</p>",
                escape(
                    &r.overrides
                        .iter()
                        .map(|o| format!("--set {o}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            );
        }
        let _ = writeln!(h, "<pre class=\"source\">{}</pre>", escape(&r.source));
    }
    h.push_str(
        "</section>\n<footer>Written by <code>plugtcp lab run</code>. The numbers are in \
         <code>summary.csv</code> and <code>summary.json</code>, each run's time series in \
         <code>runs/&lt;point&gt;/&lt;engine&gt;-seed&lt;N&gt;/flows.csv</code> and \
         <code>queue.csv</code>, the plots in <code>plots/</code>.</footer>\n</body>\n</html>\n",
    );
    h
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The point's summaries, plugtcp first.
fn points_of<'a>(r: &'a LabResults, label: &str) -> Vec<&'a PointSummary> {
    let mut v: Vec<&PointSummary> = r.points.iter().filter(|p| p.point == label).collect();
    v.sort_by_key(|p| p.engine == Engine::Kernel);
    v
}

/// The flows' names of a point, from its first run (they do not change across seeds).
fn flow_names(r: &LabResults, label: &str, n: usize) -> Vec<String> {
    let run = r.runs.iter().find(|x| x.point == label);
    (0..n)
        .map(|i| {
            run.and_then(|x| x.flows.get(i)).map_or_else(
                || format!("flow {i}"),
                |f| {
                    // The CC module and stack are part of what a reader compares.
                    let what = format!("{}/{}", f.cc, f.stack);
                    if f.name.starts_with(&what) {
                        f.name.clone()
                    } else {
                        format!("{} ({what})", f.name)
                    }
                },
            )
        })
        .collect()
}

fn summary_table(h: &mut String, points: &[&PointSummary]) {
    h.push_str(
        "<div class=\"scroll\"><table class=\"summary\">\n<thead><tr><th>engine</th>\
         <th>seeds</th><th>utilisation</th><th>Jain's index</th><th>delay p50 (ms)</th>\
         <th>delay p95 (ms)</th><th>delay p99 (ms)</th><th>loss</th><th>retransmits</th>\
         </tr></thead>\n<tbody>\n",
    );
    for p in points {
        let seeds: Vec<String> = p.seeds.iter().map(u64::to_string).collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            p.engine.name(),
            escape(&seeds.join(", ")),
            spread(&p.utilisation, &pct),
            spread(&p.jain, &|v| fixed(v, 3)),
            spread(&p.delay_p50_ms, &num),
            spread(&p.delay_p95_ms, &num),
            spread(&p.delay_p99_ms, &num),
            spread(&p.loss_rate, &pct),
            spread(&p.retransmits, &num),
        );
    }
    h.push_str("</tbody></table></div>\n");
}

/// Per flow and engine: goodput, completion time, and what limited it (per seed when it
/// differs), the limits that are not its CC highlighted.
fn flows_table(h: &mut String, r: &LabResults, label: &str, points: &[&PointSummary]) {
    let n = points
        .iter()
        .map(|p| p.flow_goodput_mbps.len())
        .max()
        .unwrap_or(0);
    if n == 0 {
        return;
    }
    let any_fct = points
        .iter()
        .any(|p| p.flow_fct_s.iter().any(Option::is_some));
    let names = flow_names(r, label, n);
    // The queueing delay each flow met (results from before it was measured have zeros).
    let any_qdelay = r
        .runs
        .iter()
        .filter(|x| x.point == label)
        .flat_map(|x| &x.flows)
        .any(|f| f.queue_delay_p95_ms > 0.0);
    let _ = writeln!(
        h,
        "<div class=\"scroll\"><table class=\"summary flows\">\n<thead><tr><th>flow</th>\
         <th>engine</th><th>goodput (Mbit/s)</th>{}{}<th>limited by</th></tr></thead>\n<tbody>",
        if any_fct { "<th>FCT (s)</th>" } else { "" },
        if any_qdelay {
            "<th>queueing delay p95 (ms)</th>"
        } else {
            ""
        }
    );
    for (i, name) in names.iter().enumerate() {
        for p in points {
            let goodput = p
                .flow_goodput_mbps
                .get(i)
                .map_or_else(|| "–".to_string(), |s| spread(s, &num));
            let fct = if any_fct {
                format!(
                    "<td class=\"num\">{}</td>",
                    p.flow_fct_s
                        .get(i)
                        .and_then(Option::as_ref)
                        .map_or_else(|| "–".to_string(), |s| spread(s, &num))
                )
            } else {
                String::new()
            };
            let mut limits: Vec<(Limit, Vec<u64>)> = Vec::new();
            let mut qdelay = Vec::new();
            for x in r
                .runs
                .iter()
                .filter(|x| x.point == label && x.engine == p.engine)
            {
                if let Some(f) = x.flows.get(i) {
                    qdelay.push(f.queue_delay_p95_ms);
                    match limits.iter_mut().find(|(l, _)| *l == f.limited_by) {
                        Some((_, seeds)) => seeds.push(x.seed),
                        None => limits.push((f.limited_by, vec![x.seed])),
                    }
                }
            }
            let limited = if limits.is_empty() {
                "–".to_string()
            } else {
                let one = limits.len() == 1;
                limits
                    .iter()
                    .map(|(l, seeds)| {
                        let mut s = escape(l.name());
                        if !one {
                            let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
                            let _ = write!(s, " (seed {})", seeds.join(", "));
                        }
                        if matches!(l, Limit::ReceiveWindow | Limit::SendBuffer) {
                            format!("<span class=\"flag\">{s}</span>")
                        } else {
                            s
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let qdelay = match (any_qdelay, qdelay.is_empty()) {
                (false, _) => String::new(),
                (true, true) => "<td class=\"num\">–</td>".to_string(),
                (true, false) => format!(
                    "<td class=\"num\">{}</td>",
                    spread(&Spread::of(&qdelay), &num)
                ),
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{goodput}</td>{fct}{qdelay}\
                 <td>{limited}</td></tr>",
                escape(name),
                p.engine.name(),
            );
        }
    }
    h.push_str("</tbody></table></div>\n");
}

fn runs_table(h: &mut String, slug: &str, runs: &[&(&RunResult, Vec<Plot>)]) {
    h.push_str(
        "<div class=\"scroll\"><table class=\"runs\">\n<thead><tr><th>engine</th><th>seed</th>\
         <th>duration (s)</th><th>utilisation</th><th>Jain's index</th><th>delay p95 (ms)</th>\
         <th>loss</th><th>retransmits</th><th>goodput per flow (Mbit/s)</th><th>data</th>\
         </tr></thead>\n<tbody>\n",
    );
    for (x, _) in runs {
        let p95 = x.links.get(x.bottleneck).map_or(0.0, |l| l.delay_p95_ms);
        let goodputs: Vec<String> = x.flows.iter().map(|f| num(f.goodput_mbps)).collect();
        let dir = format!("runs/{slug}/{}-seed{}/", x.engine.name(), x.seed);
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td><a href=\"{}\">{}</a></td></tr>",
            x.engine.name(),
            x.seed,
            num(x.duration_s),
            pct(x.utilisation()),
            fixed(x.jain, 3),
            num(p95),
            pct(x.loss_rate),
            x.retransmits,
            escape(&goodputs.join(" / ")),
            escape(&dir),
            escape(&dir),
        );
    }
    h.push_str("</tbody></table></div>\n");
}

/// The warnings, as HTML list items: flows limited by their receive window or send buffer
/// (from the points' `flagged`, with the seeds and the share of samples from the runs), then
/// flows whose data did not arrive intact. `true` marks the errors.
fn warnings(r: &LabResults, labels: &[String]) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for label in labels {
        for p in points_of(r, label) {
            for (flow, why) in &p.flagged {
                let mut seeds = Vec::new();
                let mut shares = Vec::new();
                for x in r
                    .runs
                    .iter()
                    .filter(|x| x.point == p.point && x.engine == p.engine)
                {
                    if let Some(f) = x
                        .flows
                        .iter()
                        .find(|f| f.name == *flow && f.limited_by.name() == why)
                    {
                        seeds.push(x.seed.to_string());
                        match f.limited_by {
                            Limit::ReceiveWindow => shares.push(f.rwnd_limited),
                            Limit::SendBuffer => shares.push(f.sndbuf_limited),
                            _ => {}
                        }
                    }
                }
                let mut s = format!(
                    "<strong>{}</strong>, {}: flow <code>{}</code> was limited by its <strong>{}</strong>",
                    escape(point_name(label)),
                    p.engine.name(),
                    escape(flow),
                    escape(why)
                );
                if !seeds.is_empty() {
                    let _ = write!(
                        s,
                        " (seed{} {}",
                        plural(seeds.len()),
                        escape(&seeds.join(", "))
                    );
                    if !shares.is_empty() {
                        let sp = Spread::of(&shares);
                        let _ = write!(s, "; {} of its samples", spread_range(&sp, &pct));
                    }
                    s.push(')');
                }
                let advice = match why.as_str() {
                    w if w == Limit::ReceiveWindow.name() => {
                        ": raise the receiver's buffer (<code>net.inet.tcp.recvspace</code>, \
                         <code>net.inet.tcp.recvbuf_max</code> in the scenario's sysctls)."
                    }
                    w if w == Limit::SendBuffer.name() => {
                        ": raise the sender's buffer (<code>net.inet.tcp.sendspace</code>, \
                         <code>net.inet.tcp.sendbuf_max</code> in the scenario's sysctls)."
                    }
                    _ => ".",
                };
                s.push_str(advice);
                out.push((false, s));
            }
        }
    }
    for x in runs_sorted(r, labels) {
        for f in x.flows.iter().filter(|f| !f.intact) {
            out.push((
                true,
                format!(
                    "<strong>{}</strong>, {}, seed {}: flow <code>{}</code>: the bytes the \
                     receiver read differ from the bytes the sender wrote.",
                    escape(point_name(&x.point)),
                    x.engine.name(),
                    x.seed,
                    escape(&f.name)
                ),
            ));
        }
    }
    out
}

fn runs_sorted<'a>(r: &'a LabResults, labels: &[String]) -> Vec<&'a RunResult> {
    let mut v: Vec<&RunResult> = r.runs.iter().collect();
    v.sort_by_key(|x| {
        (
            labels.iter().position(|l| *l == x.point),
            x.engine == Engine::Kernel,
            x.seed,
        )
    });
    v
}

fn figure(h: &mut String, p: &Plot) {
    let caption = escape(&p.caption);
    let _ = write!(
        h,
        "<figure class=\"plot-figure\" id=\"fig-{id}\"><img class=\"plot\" id=\"{id}\" \
         width=\"{w}\" height=\"{ht}\" alt=\"{caption}\" src=\"data:image/png;base64,",
        id = escape(&p.id),
        w = super::plots::WIDTH,
        ht = super::plots::HEIGHT,
    );
    base64::engine::general_purpose::STANDARD.encode_string(&p.png, h);
    let _ = writeln!(h, "\"><figcaption>{caption}</figcaption></figure>");
}

/// "mean (min–max)", or the mean alone when the seeds agree (or there is one).
fn spread(s: &Spread, f: &dyn Fn(f64) -> String) -> String {
    let (m, lo, hi) = (f(s.mean), f(s.min), f(s.max));
    if lo == hi {
        m
    } else {
        format!("{m} ({lo}–{hi})")
    }
}

/// "min–max", or one value when they agree.
fn spread_range(s: &Spread, f: &dyn Fn(f64) -> String) -> String {
    let (lo, hi) = (f(s.min), f(s.max));
    if lo == hi {
        lo
    } else {
        format!("{lo}–{hi}")
    }
}

/// A number with about three significant digits.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let a = v.abs();
    if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.001 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".to_string()
    }
}

/// A fraction as a percentage.
fn pct(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let p = v * 100.0;
    if p == 0.0 {
        "0%".to_string()
    } else if p.abs() >= 10.0 {
        format!("{p:.1}%")
    } else if p.abs() >= 0.01 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1e}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(pct(0.9312), "93.1%");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct(0.00012), "0.01%");
        assert_eq!(num(12.0), "12");
        assert_eq!(num(4.567), "4.57");
        let s = Spread {
            mean: 0.5,
            min: 0.25,
            max: 0.75,
            stddev: 0.0,
        };
        assert_eq!(spread(&s, &pct), "50.0% (25.0%–75.0%)");
        let one = Spread {
            mean: 2.0,
            min: 2.0,
            max: 2.0,
            stddev: 0.0,
        };
        assert_eq!(spread(&one, &num), "2");
    }

    #[test]
    fn empty_results_still_report() {
        let dir = std::env::temp_dir().join(format!(
            "plugtcp-report-empty-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        let r = LabResults {
            overrides: Vec::new(),
            scenario: "<none>".into(),
            description: String::new(),
            source: String::new(),
            runs: vec![],
            points: vec![],
        };
        let path = write_report(&dir, &r).unwrap();
        let html = std::fs::read_to_string(&path).unwrap();
        assert!(html.contains("<h1 id=\"title\">&lt;none&gt;</h1>"));
        assert!(!html.contains("<img"));
        assert_eq!(std::fs::read_dir(dir.join("plots")).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
