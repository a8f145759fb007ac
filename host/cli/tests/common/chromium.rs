//! Opens a lab `report.html` in headless Chromium and checks what a reader would get: the
//! page loads offline, its DOM has the expected titles and one `<img class="plot">` per PNG
//! under `plots/`, a screenshot shows content all down the page, Chromium decodes every plot
//! image, and a screenshot of the figures alone shows the plots' colours.
//!
//! Include it with `#[path = "common/chromium.rs"] mod chromium;`. Without Chromium the
//! check is skipped, unless `CI` is set (CI installs it: `.ci/run`), where it fails.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `/usr/bin/chromium`, else `chromium` or `chromium-browser` on `PATH`.
pub fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "plugtcp-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks `report` (a `report.html` with its `plots/` directory beside it) as described in
/// the module doc. `expected_titles` must each appear in the rendered DOM (as text). Returns
/// false when it skipped (no Chromium, `CI` unset); panics when a check fails.
pub fn check_report_in_chromium(report: &Path, expected_titles: &[&str]) -> bool {
    let html = std::fs::read_to_string(report).unwrap();
    let pngs = count_pngs(&report.parent().unwrap().join("plots"));
    // Self-contained: nothing to run, nothing to fetch.
    let lower = html.to_lowercase();
    for bad in [
        "<script",
        "src=\"http",
        "src='http",
        "url(http",
        "<link ",
        "@import",
    ] {
        assert!(!lower.contains(bad), "report.html has {bad:?}");
    }
    assert_eq!(
        plot_imgs(&html),
        pngs,
        "<img class=\"plot\"> in report.html vs PNG files in plots/"
    );

    let Some(chromium) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed (CI installs it in .ci/run)");
        }
        eprintln!(
            "note: chromium not found; skipping the rendering check of {}",
            report.display()
        );
        return false;
    };
    let url = format!("file://{}", report.canonicalize().unwrap().display());

    let dom = run_chromium(&chromium, &["--dump-dom".to_string(), url.clone()]);
    let dom = String::from_utf8_lossy(&dom).into_owned();
    assert!(dom.contains("</html>"), "chromium --dump-dom: {dom:.500}");
    for t in expected_titles {
        assert!(
            dom.contains(t) || dom.contains(&escape(t)),
            "the rendered report lacks {t:?}"
        );
    }
    assert_eq!(
        plot_imgs(&dom),
        pngs,
        "<img class=\"plot\"> in the rendered DOM"
    );

    let shot_dir = temp_dir("screenshot");
    let shot = shot_dir.join("report.png");
    run_chromium(
        &chromium,
        &[
            "--hide-scrollbars".to_string(),
            "--window-size=1280,2400".to_string(),
            format!("--screenshot={}", shot.display()),
            url,
        ],
    );
    let (w, h, rgb) = decode_rgb(&std::fs::read(&shot).unwrap());
    assert!(w >= 1000 && h >= 1200, "screenshot is {w}x{h}");
    let stats = screenshot_stats(w, h, &rgb);
    let inked = stats.bands.iter().filter(|s| **s > 0.02).count();
    eprintln!(
        "screenshot {w}x{h}: non-white share per band {:?} %, {} colours",
        stats
            .bands
            .iter()
            .map(|s| (s * 1000.0).round() / 10.0)
            .collect::<Vec<_>>(),
        stats.colours
    );
    assert!(
        inked * 2 >= stats.bands.len(),
        "screenshot mostly blank: non-white share per band {:?} (kept at {})",
        stats.bands,
        shot.display()
    );
    assert!(
        stats.colours >= 100,
        "screenshot has {} colours (kept at {})",
        stats.colours,
        shot.display()
    );

    // The plots themselves: how far down the page they start depends on the tables above
    // them, so a copy of the page shows only the figures (a style added at the end), and a
    // script added to it records on load how many plot images Chromium decoded.
    let probe = shot_dir.join("probe.html");
    let probe_html = html.replacen(
        "</body>",
        "<style>body > :not(#comparison):not(#runs) { display: none !important; } \
         #runs .scroll, #runs p { display: none !important; }</style>\n\
         <script>window.addEventListener('load', () => { \
         const imgs = [...document.querySelectorAll('img.plot')]; \
         const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length; \
         document.body.setAttribute('data-plots-decoded', ok + '/' + imgs.length); });</script>\n\
         </body>",
        1,
    );
    std::fs::write(&probe, probe_html).unwrap();
    let probe_url = format!("file://{}", probe.display());
    let dom = run_chromium(&chromium, &["--dump-dom".to_string(), probe_url.clone()]);
    let dom = String::from_utf8_lossy(&dom);
    let want = format!("data-plots-decoded=\"{pngs}/{pngs}\"");
    assert!(
        dom.contains(&want),
        "not every plot image decoded: want {want}, got {:?}",
        dom.find("data-plots-decoded")
            .map(|i| &dom[i..(i + 40).min(dom.len())])
    );
    if pngs > 0 {
        let plots_shot = shot_dir.join("plots.png");
        run_chromium(
            &chromium,
            &[
                "--hide-scrollbars".to_string(),
                "--window-size=1280,1600".to_string(),
                format!("--screenshot={}", plots_shot.display()),
                probe_url,
            ],
        );
        let (w, h, rgb) = decode_rgb(&std::fs::read(&plots_shot).unwrap());
        let stats = screenshot_stats(w, h, &rgb);
        eprintln!(
            "plots screenshot {w}x{h}: {:.2} % saturated pixels, {} saturated colours",
            stats.saturated_share * 100.0,
            stats.saturated_colours
        );
        assert!(
            stats.saturated_share > 0.003,
            "the plots show no colour: {:.3} % saturated pixels, {} saturated colours (kept at {})",
            stats.saturated_share * 100.0,
            stats.saturated_colours,
            plots_shot.display()
        );
    }
    let _ = std::fs::remove_dir_all(&shot_dir);
    true
}

/// The `<img>` tags whose class is `plot`.
pub fn plot_imgs(html: &str) -> usize {
    html.match_indices("<img")
        .filter(|(i, _)| {
            let tag = &html[*i..];
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            tag.contains("class=\"plot\"")
        })
        .count()
}

fn count_pngs(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
            .count()
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Runs headless Chromium with a fresh profile, offline as far as flags go, and returns its
/// standard output. Fails after two minutes.
fn run_chromium(chromium: &Path, extra: &[String]) -> Vec<u8> {
    let profile = temp_dir("chromium-profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {extra:?}: no result after 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        status.success(),
        "chromium {extra:?}: {status}: {}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

fn decode_rgb(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut dec = png::Decoder::new(png_bytes);
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Indexed => unreachable!("expanded"),
    };
    let rgb = buf
        .chunks(channels)
        .flat_map(|p| match channels {
            1 | 2 => [p[0], p[0], p[0]],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    (info.width, info.height, rgb)
}

/// What a screenshot shows.
struct Stats {
    /// The share of non-white pixels in each of 8 horizontal bands.
    bands: Vec<f64>,
    /// Distinct colours.
    colours: usize,
    /// Pixels and distinct colours that are clearly coloured (plot lines and bars; text,
    /// borders and table shading are grey or nearly).
    saturated_share: f64,
    saturated_colours: usize,
}

fn screenshot_stats(w: u32, h: u32, rgb: &[u8]) -> Stats {
    let bands = 8usize;
    let band_h = (h as usize).div_ceil(bands);
    let mut inked = vec![0usize; bands];
    let mut totals = vec![0usize; bands];
    let mut colours = std::collections::HashSet::new();
    let mut saturated = std::collections::HashSet::new();
    let mut saturated_px = 0usize;
    for (i, p) in rgb.chunks(3).enumerate() {
        let y = i / w as usize;
        let b = (y / band_h).min(bands - 1);
        totals[b] += 1;
        if p.iter().any(|c| *c < 240) {
            inked[b] += 1;
        }
        let c = (p[0], p[1], p[2]);
        colours.insert(c);
        let (mx, mn) = (p.iter().max().unwrap(), p.iter().min().unwrap());
        if mx - mn > 50 {
            saturated.insert(c);
            saturated_px += 1;
        }
    }
    Stats {
        bands: inked
            .iter()
            .zip(&totals)
            .map(|(i, t)| *i as f64 / (*t).max(1) as f64)
            .collect(),
        colours: colours.len(),
        saturated_share: saturated_px as f64 / (rgb.len() / 3).max(1) as f64,
        saturated_colours: saturated.len(),
    }
}
