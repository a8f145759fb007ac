//! examples/cc-template as its README tells a user to use it: built outside the workspace,
//! `kldload`ed into a running `plugtcp serve` through the control socket, and a live
//! connection switched to it with `tcpsso` while it downloads; every byte arrives.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use sha2::{Digest, Sha256};

/// Tests and builds the template as its README says, into a target directory of its own.
fn build_template() -> PathBuf {
    common::build_example("cc-template", "libplugtcp_cc_aimd.so").1
}

use common::{ctl, ok};

#[test]
fn template_kldloaded_into_a_running_host_takes_over_a_live_connection() {
    let so = build_template();
    let dir = std::env::temp_dir().join(format!("plugtcp-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("control.sock");
    let data = common::payload(24 << 20, 0x5eed);
    std::fs::write(dir.join("f.bin"), &data).unwrap();
    let port = 20000 + (std::process::id() % 20000) as u16 + 7;
    // A 40 Mbit/s, 10 ms path out of the server: the download lasts a few seconds.
    let mut server = common::spawn_udp_http_server(
        &dir,
        port,
        Some(&sock),
        &["--fault-out", "rate=40m,delay=10ms,loss=0.002"],
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket for its owner only");

    let out = dir.join("out.bin");
    let mut get = common::udp_get_command("f.bin", port, &out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Find the download on the server.
    let remote = common::live_download(&sock, 0)["remote"]
        .as_str()
        .unwrap()
        .to_string();

    let loaded = ok(&ctl(&sock, &["kldload", so.to_str().unwrap()]));
    assert!(loaded.contains("loaded cc aimd"), "{loaded}");
    ok(&ctl(&sock, &["sysctl", "net.inet.tcp.cc.aimd.ai=2"]));
    let bad = ctl(&sock, &["sysctl", "net.inet.tcp.cc.aimd.ai=0"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("Invalid argument") || err.contains("EINVAL"),
        "{err}"
    );
    // The refusal names the parameter's range.
    assert!(err.contains("takes 1 to 64"), "{err}");
    ok(&ctl(
        &sock,
        &[
            "tcpsso",
            "127.0.0.1:8080",
            &remote,
            "TCP_CONGESTION",
            "aimd",
        ],
    ));
    let rows = ok(&ctl(&sock, &["sockstat"]));
    assert!(
        rows.lines()
            .any(|l| l.contains(&remote) && l.contains("aimd")),
        "{rows}"
    );
    // On the lossy path cwnd visibly moves under aimd (sampled until it changes).
    let cwnd = || -> Option<u64> {
        let rows = ok(&ctl(&sock, &["sockstat"]));
        let mut lines = rows.lines();
        lines.find(|l| l.contains(&remote) && l.contains("aimd"))?;
        let detail = lines.next()?;
        let v = detail.split("cwnd:").nth(1)?.split_whitespace().next()?;
        v.parse().ok()
    };
    let first = cwnd();
    let moved = (0..40).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = cwnd();
        now.is_some() && now != first
    });
    assert!(moved, "cwnd stayed at {first:?}");
    let stat = ok(&ctl(&sock, &["kldstat"]));
    let row = stat.lines().find(|l| l.contains(" aimd ")).unwrap();
    assert!(row.contains(" 1 "), "one PCB on aimd: {row}");
    let unknown = ctl(
        &sock,
        &[
            "tcpsso",
            "127.0.0.1:8080",
            &remote,
            "TCP_CONGESTION",
            "nosuch",
        ],
    );
    assert!(!unknown.status.success());

    let status = get.wait().unwrap();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut get.stderr.take().unwrap(), &mut stderr);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let server_status = server.wait().unwrap();
    let got = std::fs::read(&out).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        Sha256::digest(&got) == Sha256::digest(&data),
        "downloaded bytes differ"
    );
    assert!(server_status.success());
    assert!(!sock.exists(), "socket removed on exit");
}

/// `plugtcp bench cc --plugin-dir DIR --cc aimd` runs a module built out of tree, as the demo
/// would: the simulated hosts load the plugin files on the search path. An unknown module's
/// error names it, says where it looked and what there is.
#[test]
fn bench_cc_runs_the_template_from_the_plugin_dir() {
    let so = build_template();
    let dir = so.parent().unwrap();
    let bench = |cc: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_plugtcp"))
            .arg("--plugin-dir")
            .arg(dir)
            .args([
                "bench",
                "cc",
                "--cc",
                cc,
                "--seconds",
                "2",
                "--warmup",
                "1",
                "--json",
            ])
            .output()
            .unwrap()
    };
    let out = bench("aimd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["cc"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one and two flows: {v}");
    for r in rows {
        assert_eq!(r["cc"], "aimd");
        assert!(r["utilisation"].as_f64().unwrap() > 0.5, "{r}");
    }
    let out = bench("nosuch");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no CC module `nosuch`"), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(err.contains("aimd"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// docs/lab.md's way from a new module to a report: the template's module against cubic in
/// `examples/lab/vs-cubic.toml`, set with `--set`, loaded from `--plugin-dir`.
#[test]
fn lab_runs_the_template_against_cubic_into_a_report() {
    let so = build_template();
    let dir = so.parent().unwrap();
    let out_dir = std::env::temp_dir().join(format!("plugtcp-template-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lab/vs-cubic.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugtcp"))
        .arg("--plugin-dir")
        .arg(dir)
        .args(["lab", "run"])
        .arg(&scenario)
        .args(["--set", "flow.0.cc=aimd", "--duration", "5s", "-o"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both sweep points ran, aimd and cubic both moved data.
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| queue="))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    for run in v["runs"].as_array().unwrap() {
        let flows = run["flows"].as_array().unwrap();
        assert_eq!(flows[0]["cc"], "aimd");
        assert_eq!(flows[1]["cc"], "cubic");
        for f in flows {
            assert!(f["bytes"].as_u64().unwrap() > 1_000_000, "{f}");
            assert_eq!(f["intact"], true);
        }
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("aimd"));
    let _ = std::fs::remove_dir_all(&out_dir);
}
