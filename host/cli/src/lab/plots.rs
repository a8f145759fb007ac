//! The lab's plots, drawn with plotters into memory as PNG bytes (the report embeds them and
//! writes them under `plots/`). Text uses the font compiled into the binary
//! ([`crate::plot::fonts`]), so drawing needs no system font and looks the same everywhere.
//!
//! Per run ([`run_plots`]): goodput, cwnd, smoothed RTT, pacing rate and bytes in flight per
//! flow, backlog, queueing delay and drops/marks per link. Across points
//! ([`comparison_plots`]): grouped bars of utilisation, Jain's index and p95 delay (plugtcp and
//! kernel side by side, whiskers min–max over seeds), and overlays of the aggregate goodput
//! and the bottleneck's queueing delay with one line per point.
//!
//! Every picture is [`WIDTH`] x [`HEIGHT`] with its legend in a strip on the right, so lines
//! are never hidden behind it. Series without samples draw empty axes and say so.

use std::collections::BTreeMap;
use std::error::Error;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::output::{point_labels, point_slugs, slug_of};
use super::results::{Engine, FlowSample, LabResults, QueueSample, RunResult, Spread};
use crate::plot::{encode_png, fonts, GlyphBackend};

/// Picture size: wide enough for a time series, short enough that a report page shows two.
pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 420;
/// The legend strip on the right.
const LEGEND_W: u32 = 230;

/// One picture.
#[derive(Clone, Debug, PartialEq)]
pub struct Plot {
    /// Stable and safe as a file name: the report's `<img id>` and `plots/<id>.png`.
    pub id: String,
    /// What it shows: the picture's title and the report's caption and alt text.
    pub caption: String,
    pub png: Vec<u8>,
}

impl Plot {
    pub fn file_name(&self) -> String {
        format!("{}.png", self.id)
    }
}

/// Tableau 10: ten hues that stay apart for most colour vision deficiencies.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x79, 0x70, 0x6e),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The engines' colours in the bar charts (the same in every chart).
fn engine_colour(e: Engine) -> RGBColor {
    match e {
        Engine::Plugtcp => PALETTE[0],
        Engine::Kernel => PALETTE[1],
    }
}

/// The plots of one run. `slug` is its point's file-name form ([`super::output::point_slugs`]),
/// which makes the ids unique across the report.
pub fn run_plots(run: &RunResult, slug: &str) -> Result<Vec<Plot>, String> {
    let ctx = format!(
        "{}, {}, {}, seed {}",
        run.scenario,
        point_name(&run.point),
        run.engine.name(),
        run.seed
    );
    let id = |metric: &str| format!("run-{slug}-{}-seed{}-{metric}", run.engine.name(), run.seed);
    let x_max = run.duration_s;
    let nflows = run
        .flow_series
        .iter()
        .map(|s| s.flow + 1)
        .max()
        .unwrap_or(0)
        .max(run.flows.len());
    let flow_names: Vec<String> = (0..nflows).map(|i| flow_label(run, i)).collect();
    let per_flow = |f: &dyn Fn(&FlowSample) -> f64| -> Vec<Line> {
        (0..nflows)
            .map(|i| {
                Line::new(
                    &flow_names[i],
                    i,
                    run.flow_series
                        .iter()
                        .filter(|s| s.flow == i)
                        .map(|s| (s.t, f(s)))
                        .collect(),
                )
            })
            .collect()
    };
    let nlinks = run
        .queue_series
        .iter()
        .map(|s| s.link + 1)
        .max()
        .unwrap_or(0)
        .max(run.links.len());
    let link_names: Vec<String> = (0..nlinks)
        .map(|i| {
            run.links
                .get(i)
                .map_or_else(|| format!("link {i}"), |l| l.name.clone())
        })
        .collect();
    let link_series = |i: usize, f: &dyn Fn(&QueueSample) -> f64| -> Vec<(f64, f64)> {
        run.queue_series
            .iter()
            .filter(|s| s.link == i)
            .map(|s| (s.t, f(s)))
            .collect()
    };
    let per_link = |f: &dyn Fn(&QueueSample) -> f64| -> Vec<Line> {
        (0..nlinks)
            .map(|i| Line::new(&link_names[i], i, link_series(i, f)))
            .collect()
    };
    let kib = |b: u64| b as f64 / 1024.0;

    let mut specs: Vec<(&str, &str, &str, Vec<Line>)> = vec![
        (
            "goodput",
            "Goodput per flow",
            "goodput (Mbit/s)",
            per_flow(&|s| s.goodput_mbps),
        ),
        (
            "cwnd",
            "Congestion window per flow",
            "cwnd (KiB)",
            per_flow(&|s| kib(s.cwnd_bytes)),
        ),
        (
            "srtt",
            "Smoothed RTT per flow",
            "srtt (ms)",
            per_flow(&|s| s.srtt_ms),
        ),
    ];
    if run.flow_series.iter().any(|s| s.pacing_mbps > 0.0) {
        specs.push((
            "pacing",
            "Pacing rate per flow",
            "pacing rate (Mbit/s)",
            per_flow(&|s| s.pacing_mbps),
        ));
    }
    specs.push((
        "inflight",
        "Bytes in flight per flow",
        "in flight (KiB)",
        per_flow(&|s| kib(s.inflight_bytes)),
    ));
    specs.push((
        "backlog",
        "Queue backlog per link",
        "backlog (KiB)",
        per_link(&|s| kib(s.backlog_bytes)),
    ));
    specs.push((
        "queue-delay",
        "Queueing delay per link",
        "queueing delay (ms)",
        per_link(&|s| s.delay_ms),
    ));
    let any_marks = run.queue_series.iter().any(|s| s.marks > 0);
    let mut dm = Vec::new();
    for (i, name) in link_names.iter().enumerate() {
        dm.push(Line::new(
            &format!("{name} drops"),
            i,
            link_series(i, &|s| s.drops as f64),
        ));
        if any_marks {
            let mut l = Line::new(
                &format!("{name} CE marks"),
                i,
                link_series(i, &|s| s.marks as f64),
            );
            l.dashed = true;
            dm.push(l);
        }
    }
    specs.push((
        "drops",
        if any_marks {
            "Drops and CE marks per link (cumulative)"
        } else {
            "Drops per link (cumulative)"
        },
        "packets",
        dm,
    ));

    specs
        .into_iter()
        .map(|(metric, what, y_desc, lines)| {
            let caption = format!("{what} — {ctx}");
            let png = line_chart(&caption, "time (s)", y_desc, x_max, &lines)?;
            Ok(Plot {
                id: id(metric),
                caption,
                png,
            })
        })
        .collect()
}

/// The plots comparing the points: bars of utilisation, Jain's index and p95 delay per point
/// (none without point summaries), then per engine the aggregate goodput and the bottleneck's
/// queueing delay over time, one line per point (its first seed).
pub fn comparison_plots(r: &LabResults) -> Result<Vec<Plot>, String> {
    let labels = point_labels(r);
    let engines: Vec<Engine> = [Engine::Plugtcp, Engine::Kernel]
        .into_iter()
        .filter(|e| r.points.iter().any(|p| p.engine == *e))
        .collect();
    let mut out = Vec::new();
    if !r.points.is_empty() {
        type Metric = (&'static str, &'static str, &'static str, f64, f64);
        // (id, what, y axis, scale, the least top of the y axis)
        let metrics: [Metric; 3] = [
            (
                "utilisation",
                "Bottleneck utilisation per point",
                "utilisation (%)",
                100.0,
                100.0,
            ),
            (
                "jain",
                "Jain's fairness index per point",
                "Jain's index",
                1.0,
                1.0,
            ),
            (
                "delay-p95",
                "95th percentile queueing delay per point",
                "p95 queueing delay (ms)",
                1.0,
                0.0,
            ),
        ];
        for (metric, what, y_desc, scale, floor) in metrics {
            let pick = |p: &super::results::PointSummary| -> Spread {
                let s = match metric {
                    "utilisation" => p.utilisation,
                    "jain" => p.jain,
                    _ => p.delay_p95_ms,
                };
                Spread {
                    mean: s.mean * scale,
                    min: s.min * scale,
                    max: s.max * scale,
                    stddev: s.stddev * scale,
                }
            };
            let series: Vec<BarSeries> = engines
                .iter()
                .map(|e| BarSeries {
                    name: e.name().to_string(),
                    colour: engine_colour(*e),
                    values: labels
                        .iter()
                        .map(|l| {
                            r.points
                                .iter()
                                .find(|p| p.point == *l && p.engine == *e)
                                .map(pick)
                        })
                        .collect(),
                })
                .collect();
            let caption = format!(
                "{what} (mean, whiskers min–max over seeds) — {}",
                r.scenario
            );
            let names: Vec<String> = labels.iter().map(|l| point_name(l).to_string()).collect();
            let png = bar_chart(&caption, y_desc, &names, &series, floor, metric)?;
            out.push(Plot {
                id: format!("compare-{metric}"),
                caption,
                png,
            });
        }
    }
    for e in [Engine::Plugtcp, Engine::Kernel] {
        let firsts: Vec<(usize, &String, &RunResult)> = labels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                r.runs
                    .iter()
                    .filter(|x| x.point == *l && x.engine == e)
                    .min_by_key(|x| x.seed)
                    .map(|x| (i, l, x))
            })
            .collect();
        if firsts.is_empty() {
            continue;
        }
        let x_max = firsts.iter().map(|f| f.2.duration_s).fold(0.0, f64::max);
        let goodput: Vec<Line> = firsts
            .iter()
            .map(|(i, l, run)| Line::new(point_name(l), *i, aggregate_goodput(run)))
            .collect();
        let delay: Vec<Line> = firsts
            .iter()
            .map(|(i, l, run)| {
                Line::new(
                    point_name(l),
                    *i,
                    run.queue_series
                        .iter()
                        .filter(|s| s.link == run.bottleneck)
                        .map(|s| (s.t, s.delay_ms))
                        .collect(),
                )
            })
            .collect();
        for (metric, what, y_desc, lines) in [
            (
                "goodput",
                "Aggregate goodput of all flows per point",
                "goodput (Mbit/s)",
                goodput,
            ),
            (
                "queue-delay",
                "Bottleneck queueing delay per point",
                "queueing delay (ms)",
                delay,
            ),
        ] {
            let caption = format!("{what} (first seed) — {}, {}", r.scenario, e.name());
            let png = line_chart(&caption, "time (s)", y_desc, x_max, &lines)?;
            out.push(Plot {
                id: format!("overlay-{metric}-{}", e.name()),
                caption,
                png,
            });
        }
    }
    Ok(out)
}

/// Every plot of the report, in report order: the comparisons, then per point (in
/// [`point_labels`] order) and engine (plugtcp first) its runs by seed.
pub fn all_plots(r: &LabResults) -> Result<Vec<Plot>, String> {
    let mut out = comparison_plots(r)?;
    let slugs = point_slugs(r);
    for run in runs_in_order(r) {
        out.extend(run_plots(run, slug_of(&slugs, &run.point))?);
    }
    Ok(out)
}

/// The runs in report order: by point (as [`point_labels`]), plugtcp before kernel, by seed.
pub fn runs_in_order(r: &LabResults) -> Vec<&RunResult> {
    let labels = point_labels(r);
    let mut runs: Vec<&RunResult> = r.runs.iter().collect();
    runs.sort_by_key(|x| {
        (
            labels.iter().position(|l| *l == x.point),
            x.engine == Engine::Kernel,
            x.seed,
        )
    });
    runs
}

/// How a point is named where a label is shown (a scenario without a sweep has one point,
/// whose label may be empty).
pub(crate) fn point_name(label: &str) -> &str {
    if label.is_empty() {
        "base"
    } else {
        label
    }
}

/// A flow's legend entry: its name, with its `cc/stack` added when the name does not say it.
fn flow_label(run: &RunResult, i: usize) -> String {
    match run.flows.get(i) {
        None => format!("flow {i}"),
        Some(f) => {
            let cs = format!("{}/{}", f.cc, f.stack);
            if f.name.contains(&cs) || f.cc.is_empty() {
                f.name.clone()
            } else {
                format!("{} ({cs})", f.name)
            }
        }
    }
}

/// The sum of the flows' goodput at each sample time.
fn aggregate_goodput(run: &RunResult) -> Vec<(f64, f64)> {
    let mut by_t: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for s in &run.flow_series {
        let e = by_t.entry((s.t * 1e6).round() as i64).or_insert((s.t, 0.0));
        e.1 += s.goodput_mbps;
    }
    by_t.into_values().collect()
}

// ---- drawing ----

type Area<'a> = DrawingArea<GlyphBackend<BitMapBackend<'a>>, Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

/// One line of a line chart.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    dashed: bool,
}

impl Line {
    /// The `i`th line: its palette colour, dashed once the palette repeats.
    fn new(label: &str, i: usize, points: Vec<(f64, f64)>) -> Line {
        Line {
            label: label.to_string(),
            points: points
                .into_iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect(),
            colour: colour(i),
            dashed: i / PALETTE.len() % 2 == 1,
        }
    }
}

/// One engine's bars: a value per group (None: that point has no run of it).
struct BarSeries {
    name: String,
    colour: RGBColor,
    values: Vec<Option<Spread>>,
}

enum Mark {
    Line { dashed: bool },
    Box,
}

fn text(size: u32) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font()).color(&BLACK)
}

/// An axis tick: integers without a fraction ("70", not "70.0"), others with up to 3
/// decimals.
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn render(draw: impl FnOnce(&Area<'_>) -> DrawResult) -> Result<Vec<u8>, String> {
    fonts();
    let mut rgb = vec![255u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root =
            GlyphBackend(BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT))).into_drawing_area();
        root.fill(&WHITE).map_err(|e| format!("plot: {e}"))?;
        draw(&root).map_err(|e| format!("plot: {e}"))?;
        root.present().map_err(|e| format!("plot: {e}"))?;
    }
    encode_png(&rgb, WIDTH, HEIGHT)
}

/// The title on top (shortened to fit; the report's caption has all of it), then the chart
/// area and the legend strip.
fn frame<'a>(root: &Area<'a>, title: &str) -> Result<(Area<'a>, Area<'a>), Box<dyn Error>> {
    let style = text(17);
    let title = fit(root, title, &style, WIDTH - 24);
    let body = root.titled(&title, style)?;
    Ok(body.split_horizontally(WIDTH - LEGEND_W))
}

fn text_width(area: &Area<'_>, s: &str, style: &TextStyle) -> u32 {
    area.estimate_text_size(s, style).map_or(0, |(w, _)| w)
}

/// `s`, cut and ended with "…" if it is wider than `max` pixels.
fn fit(area: &Area<'_>, s: &str, style: &TextStyle, max: u32) -> String {
    if text_width(area, s, style) <= max {
        return s.to_string();
    }
    let mut chars: Vec<char> = s.chars().collect();
    while chars.pop().is_some() {
        let t: String = chars.iter().collect::<String>().trim_end().to_string() + "…";
        if text_width(area, &t, style) <= max {
            return t;
        }
    }
    "…".to_string()
}

/// `s` in at most `lines` lines of at most `max` pixels, broken at spaces.
fn wrap(area: &Area<'_>, s: &str, style: &TextStyle, max: u32, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in s.split_whitespace() {
        let cand = if cur.is_empty() {
            word.to_string()
        } else {
            format!("{cur} {word}")
        };
        if cur.is_empty() || text_width(area, &cand, style) <= max {
            cur = cand;
        } else {
            out.push(std::mem::replace(&mut cur, word.to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    if out.len() > lines.max(1) {
        let rest = out.split_off(lines.max(1) - 1).join(" ");
        out.push(rest);
    }
    out.iter().map(|l| fit(area, l, style, max)).collect()
}

fn legend(area: &Area<'_>, entries: &[(String, RGBColor, Mark)], notes: &[&str]) -> DrawResult {
    let style = text(13);
    let (_, h) = area.dim_in_pixel();
    let step = 20;
    let mut y = 28;
    for (n, (label, c, mark)) in entries.iter().enumerate() {
        if y + 2 * step > h as i32 - 8 && n + 1 < entries.len() {
            area.draw_text(
                &format!("+{} more", entries.len() - n),
                &style.pos(Pos::new(HPos::Left, VPos::Center)),
                (42, y),
            )?;
            break;
        }
        match mark {
            Mark::Line { dashed: false } => {
                area.draw(&PathElement::new([(8, y), (34, y)], c.stroke_width(3)))?;
            }
            Mark::Line { dashed: true } => {
                area.draw(&PathElement::new([(8, y), (17, y)], c.stroke_width(3)))?;
                area.draw(&PathElement::new([(25, y), (34, y)], c.stroke_width(3)))?;
            }
            Mark::Box => {
                area.draw(&Rectangle::new([(10, y - 6), (32, y + 6)], c.filled()))?;
            }
        }
        let label = fit(area, label, &style, LEGEND_W - 50);
        area.draw_text(
            &label,
            &style.pos(Pos::new(HPos::Left, VPos::Center)),
            (42, y),
        )?;
        y += step;
    }
    let grey = RGBColor(90, 90, 90);
    let note_style = text(12).color(&grey);
    y += 6;
    for note in notes {
        for line in wrap(area, note, &note_style, LEGEND_W - 20, 3) {
            area.draw_text(
                &line,
                &note_style.pos(Pos::new(HPos::Left, VPos::Center)),
                (10, y),
            )?;
            y += 16;
        }
    }
    Ok(())
}

/// Lines over time; the x axis runs from 0 to `x_max` (or the last sample), the y axis from 0.
fn line_chart(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x_max: f64,
    lines: &[Line],
) -> Result<Vec<u8>, String> {
    render(|root| {
        let (area, legend_area) = frame(root, title)?;
        let all = lines.iter().flat_map(|l| l.points.iter());
        let x_hi = all.clone().map(|p| p.0).fold(x_max, f64::max);
        let x_lo = all.clone().map(|p| p.0).fold(0.0, f64::min);
        let x_hi = if x_hi.is_finite() && x_hi > x_lo {
            x_hi
        } else {
            x_lo + 1.0
        };
        let y_hi = all.map(|p| p.1).fold(0.0, f64::max);
        let y_hi = if y_hi > 0.0 { y_hi * 1.08 } else { 1.0 };
        let mut c = ChartBuilder::on(&area)
            .margin(10)
            .margin_right(16)
            .x_label_area_size(42)
            .y_label_area_size(72)
            .build_cartesian_2d(x_lo..x_hi, 0.0..y_hi)?;
        c.configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(text(13))
            .axis_desc_style(text(14))
            .bold_line_style(RGBColor(225, 225, 225))
            .max_light_lines(0)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        let mut drawn = false;
        for l in lines {
            if l.points.is_empty() {
                continue;
            }
            drawn = true;
            let style = l.colour.stroke_width(2);
            if l.dashed {
                c.draw_series(DashedLineSeries::new(l.points.iter().copied(), 8, 5, style))?;
            } else {
                c.draw_series(LineSeries::new(l.points.iter().copied(), style))?;
            }
            if l.points.len() == 1 {
                c.draw_series(std::iter::once(Circle::new(
                    l.points[0],
                    3,
                    l.colour.filled(),
                )))?;
            }
        }
        if !drawn {
            c.plotting_area().draw(&Text::new(
                "no samples",
                ((x_lo + x_hi) / 2.0, y_hi / 2.0),
                text(16).pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
        let entries: Vec<(String, RGBColor, Mark)> = lines
            .iter()
            .map(|l| (l.label.clone(), l.colour, Mark::Line { dashed: l.dashed }))
            .collect();
        legend(&legend_area, &entries, &[])?;
        Ok(())
    })
}

/// Grouped bars: one group per label, one bar per series, a whisker from min to max, the
/// mean written above the bar when it fits. The y axis reaches at least `floor` (100 % for
/// utilisation, 1 for Jain's index) so that bars of different reports compare by eye.
fn bar_chart(
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[BarSeries],
    floor: f64,
    metric: &str,
) -> Result<Vec<u8>, String> {
    let fmt = |v: f64| -> String {
        match metric {
            "utilisation" => format!("{v:.1}%"),
            "jain" => format!("{v:.3}"),
            _ if v >= 100.0 => format!("{v:.0}"),
            _ if v >= 10.0 => format!("{v:.1}"),
            _ => format!("{v:.2}"),
        }
    };
    render(|root| {
        let (area, legend_area) = frame(root, title)?;
        let n = groups.len().max(1);
        let data_max = series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .map(|s| s.max.max(s.mean))
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let y_hi = data_max.max(floor) * 1.12;
        let y_hi = if y_hi > 0.0 { y_hi } else { 1.0 };
        let mut c = ChartBuilder::on(&area)
            .margin(10)
            .margin_right(16)
            .x_label_area_size(58)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..n as f64, 0.0..y_hi)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_desc)
            .label_style(text(13))
            .axis_desc_style(text(14))
            .bold_line_style(RGBColor(225, 225, 225))
            .max_light_lines(0)
            .y_label_formatter(&tick)
            .draw()?;
        let k = series.len().max(1);
        let slot = 0.8 / k as f64;
        let group_px = {
            let (a, _) = c.backend_coord(&(0.0, 0.0));
            let (b, _) = c.backend_coord(&(1.0, 0.0));
            (b - a).max(1) as u32
        };
        let value_style = text(12);
        for (j, s) in series.iter().enumerate() {
            for (g, v) in s.values.iter().enumerate() {
                let Some(v) = v else { continue };
                let mean = if v.mean.is_finite() { v.mean } else { 0.0 };
                let x0 = g as f64 + 0.1 + j as f64 * slot + slot * 0.08;
                let x1 = g as f64 + 0.1 + (j + 1) as f64 * slot - slot * 0.08;
                let xc = (x0 + x1) / 2.0;
                c.draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x1, mean)],
                    s.colour.filled(),
                )))?;
                let mut top = mean;
                if v.min.is_finite() && v.max.is_finite() && v.max > v.min {
                    let cap = (x1 - x0) * 0.25;
                    let whisker = BLACK.stroke_width(1);
                    c.draw_series([
                        PathElement::new([(xc, v.min), (xc, v.max)], whisker),
                        PathElement::new([(xc - cap, v.min), (xc + cap, v.min)], whisker),
                        PathElement::new([(xc - cap, v.max), (xc + cap, v.max)], whisker),
                    ])?;
                    top = top.max(v.max);
                }
                let label = fmt(mean);
                let bar_px = (group_px as f64 * slot) as u32;
                if text_width(root, &label, &value_style) <= bar_px + 6 {
                    let (px, py) = c.backend_coord(&(xc, top));
                    root.draw_text(
                        &label,
                        &value_style.pos(Pos::new(HPos::Center, VPos::Bottom)),
                        (px, py - 3),
                    )?;
                }
            }
        }
        let label_style = text(13);
        for (g, name) in groups.iter().enumerate() {
            let (px, py) = c.backend_coord(&(g as f64 + 0.5, 0.0));
            let lines = wrap(
                root,
                name,
                &label_style,
                group_px.saturating_sub(6).max(20),
                3,
            );
            for (i, line) in lines.iter().enumerate() {
                root.draw_text(
                    line,
                    &label_style.pos(Pos::new(HPos::Center, VPos::Top)),
                    (px, py + 6 + 15 * i as i32),
                )?;
            }
        }
        if series.is_empty() || groups.is_empty() {
            c.plotting_area().draw(&Text::new(
                "no points",
                (n as f64 / 2.0, y_hi / 2.0),
                text(16).pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
        let entries: Vec<(String, RGBColor, Mark)> = series
            .iter()
            .map(|s| (s.name.clone(), s.colour, Mark::Box))
            .collect();
        legend(
            &legend_area,
            &entries,
            &["bars: mean over seeds", "whiskers: min–max over seeds"],
        )?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::results::*;

    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(png);
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn coloured_pixels(rgb: &[u8]) -> usize {
        rgb.chunks(3)
            .filter(|p| {
                let (mx, mn) = (p.iter().max().unwrap(), p.iter().min().unwrap());
                mx - mn > 60
            })
            .count()
    }

    fn empty_run() -> RunResult {
        RunResult {
            scenario: "empty".into(),
            point: String::new(),
            seed: 1,
            engine: Engine::Plugtcp,
            duration_s: 0.0,
            flows: vec![],
            links: vec![],
            bottleneck: 0,
            jain: 0.0,
            loss_rate: 0.0,
            retransmits: 0,
            flow_series: vec![],
            queue_series: vec![],
        }
    }

    #[test]
    fn empty_run_still_draws() {
        let run = empty_run();
        let plots = run_plots(&run, "base").unwrap();
        // goodput, cwnd, srtt, inflight, backlog, delay, drops (no pacing: all zero).
        assert_eq!(plots.len(), 7);
        for p in &plots {
            let (w, h, _) = decode(&p.png);
            assert_eq!((w, h), (WIDTH, HEIGHT));
            assert!(p.id.starts_with("run-base-plugtcp-seed1-"));
            assert!(
                p.caption.contains("empty, base, plugtcp, seed 1"),
                "{}",
                p.caption
            );
        }
        let r = LabResults {
            overrides: Vec::new(),
            scenario: "empty".into(),
            description: String::new(),
            source: String::new(),
            runs: vec![run.clone()],
            points: vec![PointSummary::of(&[&run], vec![])],
        };
        let cmp = comparison_plots(&r).unwrap();
        let ids: Vec<&str> = cmp.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "compare-utilisation",
                "compare-jain",
                "compare-delay-p95",
                "overlay-goodput-plugtcp",
                "overlay-queue-delay-plugtcp"
            ]
        );
        let none = LabResults {
            runs: vec![],
            points: vec![],
            ..r
        };
        assert!(comparison_plots(&none).unwrap().is_empty());
    }

    #[test]
    fn lines_are_drawn_in_colour() {
        let mut run = empty_run();
        run.duration_s = 10.0;
        run.flow_series = (0..100)
            .flat_map(|i| {
                (0..3).map(move |f| FlowSample {
                    t: i as f64 * 0.1,
                    flow: f,
                    goodput_mbps: 10.0 + f as f64 * 5.0 + (i as f64 * 0.3).sin(),
                    cwnd_bytes: 20_000 + 100 * i,
                    srtt_ms: 20.0,
                    pacing_mbps: if f == 0 { 12.0 } else { 0.0 },
                    retransmits: 0,
                    inflight_bytes: 10_000,
                    rwnd_bytes: 65_535,
                })
            })
            .collect();
        let plots = run_plots(&run, "base").unwrap();
        assert_eq!(plots.len(), 8);
        let (_, _, rgb) = decode(&plots[0].png);
        assert!(coloured_pixels(&rgb) > 2000, "{}", coloured_pixels(&rgb));
        let (_, _, empty) = decode(&run_plots(&empty_run(), "x").unwrap()[0].png);
        assert!(coloured_pixels(&empty) < 50);
    }
}
