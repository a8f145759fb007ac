//! `plugtcp plot TRACE.csv -o FILE.png`: a siftr trace (see [`plugtcp_host::siftr`]) drawn as a
//! PNG: congestion window, ssthresh and flight size over time above, smoothed RTT below,
//! recovery episodes shaded. Text uses a font compiled into the binary (Hack, from
//! `epaint_default_fonts`), so no system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use plugtcp_host::siftr::{parse_trace, Phase, Trace};

pub(crate) mod text;
pub(crate) use text::GlyphBackend;

/// Default picture size.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 800;

/// What a plot drew.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotSummary {
    pub points: usize,
    pub flow: String,
    pub other_lines: usize,
    pub width: u32,
    pub height: u32,
}

/// Registers the compiled-in font as "sans-serif" (once); every plot calls it before drawing.
pub(crate) fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a constant of a crate we build with: it parses.
        let _ = register_font("sans-serif", FontStyle::Normal, text::FONT_BYTES);
    });
}

/// Reads `trace` and writes the picture to `out`. Errors are one line.
pub fn plot_file(trace: &Path, out: &Path) -> Result<PlotSummary, String> {
    let text = std::fs::read(trace).map_err(|e| format!("{}: {e}", trace.display()))?;
    let text =
        String::from_utf8(text).map_err(|_| format!("{}: not a text file", trace.display()))?;
    let t = parse_trace(&text).map_err(|e| format!("{}: {e}", trace.display()))?;
    let png = render_png(&t, WIDTH, HEIGHT)?;
    std::fs::write(out, png).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(PlotSummary {
        points: t.points.len(),
        flow: t.flow,
        other_lines: t.other_lines,
        width: WIDTH,
        height: HEIGHT,
    })
}

/// The picture of `t` as PNG bytes.
pub fn render_png(t: &Trace, width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    draw(t, &mut rgb, width, height).map_err(|e| format!("plot: {e}"))?;
    encode_png(&rgb, width, height)
}

/// An RGB buffer (`width * height * 3` bytes) as PNG bytes. Best compression with adaptive
/// filtering: plots are flat colour and thin lines, which this packs about five times smaller
/// than the defaults (the lab's report embeds dozens).
pub(crate) fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Best);
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        let mut w = enc.write_header().map_err(|e| format!("png: {e}"))?;
        w.write_image_data(rgb).map_err(|e| format!("png: {e}"))?;
    }
    Ok(png)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(t: &Trace, rgb: &mut [u8], width: u32, height: u32) -> DrawResult {
    fonts();
    let pts = &t.points;
    let root = GlyphBackend(BitMapBackend::with_buffer(rgb, (width, height))).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(height * 62 / 100);
    let t0 = pts.first().map_or(0.0, |p| p.time);
    let t1 = pts.last().map_or(1.0, |p| p.time).max(t0 + 1e-6);
    let kib = |v: u64| v as f64 / 1024.0;
    // ssthresh starts "infinite" (TCP_INITIAL_SSTHRESH): drawn only once it is set.
    let unset = |v: u64| v >= plugtcp_abi::tcpcb::TCP_INITIAL_SSTHRESH as u64;
    let ymax = pts
        .iter()
        .flat_map(|p| {
            let ss = if unset(p.snd_ssthresh) {
                0
            } else {
                p.snd_ssthresh
            };
            [p.snd_cwnd, p.flight, ss]
        })
        .filter(|v| !unset(*v))
        .max()
        .unwrap_or(1)
        .max(1);
    let ymax = kib(ymax) * 1.08;

    let mut c = ChartBuilder::on(&top)
        .caption(
            if t.stack.is_empty() {
                format!("siftr trace {}: cwnd, ssthresh, flight size", t.flow)
            } else {
                format!(
                    "siftr trace {} ({}/{}): cwnd, ssthresh, flight size",
                    t.flow, t.cc, t.stack
                )
            },
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(t0..t1, 0.0..ymax)?;
    c.configure_mesh()
        .x_desc("time (s)")
        .y_desc("KiB")
        .label_style(("sans-serif", 14))
        .draw()?;

    // Recovery episodes (fast or congestion recovery) as shaded bands.
    let shade = RGBColor(255, 200, 200).mix(0.6).filled();
    let mut start: Option<f64> = None;
    for (i, p) in pts.iter().enumerate() {
        let rec = matches!(p.phase, Phase::FastRecovery | Phase::CongRecovery);
        match (rec, start) {
            (true, None) => start = Some(p.time),
            (false, Some(s)) => {
                c.draw_series(std::iter::once(Rectangle::new(
                    [(s, 0.0), (p.time, ymax)],
                    shade,
                )))?;
                start = None;
            }
            _ => {}
        }
        if i + 1 == pts.len() {
            if let Some(s) = start {
                c.draw_series(std::iter::once(Rectangle::new(
                    [(s, 0.0), (p.time, ymax)],
                    shade,
                )))?;
            }
        }
    }
    let blue = RGBColor(30, 90, 200);
    let green = RGBColor(20, 150, 60);
    let grey = RGBColor(120, 120, 120);
    c.draw_series(LineSeries::new(
        pts.iter()
            .filter(|p| !unset(p.snd_ssthresh))
            .map(|p| (p.time, kib(p.snd_ssthresh))),
        grey.stroke_width(1),
    ))?
    .label("ssthresh")
    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(2)));
    c.draw_series(LineSeries::new(
        pts.iter()
            .filter(|p| !unset(p.snd_cwnd))
            .map(|p| (p.time, kib(p.snd_cwnd))),
        blue.stroke_width(2),
    ))?
    .label("cwnd")
    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(2)));
    c.draw_series(LineSeries::new(
        pts.iter().map(|p| (p.time, kib(p.flight))),
        green.stroke_width(1),
    ))?
    .label("flight size")
    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], green.stroke_width(2)));
    c.draw_series(std::iter::once(Rectangle::new(
        [(t0, 0.0), (t0, 0.0)],
        shade,
    )))?
    .label("recovery")
    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade));
    // Live switches of stack or CC: a dashed line where the names change, labelled with
    // what runs from then on.
    let purple = RGBColor(140, 40, 160);
    for (at, names) in &t.switches {
        c.draw_series(DashedLineSeries::new(
            [(*at, 0.0), (*at, ymax)],
            6,
            4,
            purple.stroke_width(2),
        ))?;
        c.draw_series(std::iter::once(Text::new(
            format!("-> {names}"),
            (*at, ymax * 0.97),
            ("sans-serif", 14).into_font().color(&purple),
        )))?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;

    let rmax = pts.iter().map(|p| p.srtt_us).max().unwrap_or(1).max(1) as f64 / 1000.0 * 1.1;
    let mut r = ChartBuilder::on(&bottom)
        .caption("smoothed RTT", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(t0..t1, 0.0..rmax)?;
    r.configure_mesh()
        .x_desc("time (s)")
        .y_desc("srtt (ms)")
        .label_style(("sans-serif", 14))
        .draw()?;
    let red = RGBColor(200, 40, 40);
    r.draw_series(LineSeries::new(
        pts.iter().map(|p| (p.time, p.srtt_us as f64 / 1000.0)),
        red.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}
