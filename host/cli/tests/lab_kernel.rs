//! `lab run --kernel`: a scenario run with the Linux kernel's TCP over veth pairs in network
//! namespaces, the bottleneck shaped by tc. Needs root and iproute2; elsewhere the tests say
//! so and skip, except under CI as root, where they must run.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use plugtcp_cli::lab::kernel;
use plugtcp_cli::lab::results::{Engine, RunResult};
use plugtcp_cli::lab::scenario;

/// One kernel run at a time: they take real time and CPU, and each test checks that no
/// namespace of this process is left.
static SERIAL: Mutex<()> = Mutex::new(());

/// Whether the kernel engine can run here (then holding the lock); panics under CI as root
/// if it cannot.
fn can_run() -> Option<MutexGuard<'static, ()>> {
    match kernel::available() {
        Ok(()) => Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner())),
        Err(e) => {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            assert!(
                !(root && std::env::var_os("CI").is_some()),
                "CI as root, but --kernel cannot run: {e}"
            );
            eprintln!("skipping: {e}");
            None
        }
    }
}

fn write_scenario(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plugtcp-lab-kernel-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(tag: &str, text: &str) -> Result<RunResult, String> {
    let path = write_scenario(tag, text);
    let file = scenario::load(&path).unwrap();
    let r = kernel::run_kernel(&path, &file.points[0], 1);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    r
}

fn print_row(r: &RunResult) {
    for l in &r.links {
        eprintln!(
            "link {} {}: utilisation {:.3}, delivered {:.2} Mbit, limit {} B, max backlog {} B, \
             delay p50/p95/p99 {:.1}/{:.1}/{:.1} ms, packets {}, drops {}, marks {}",
            l.name,
            l.qdisc,
            l.utilisation,
            l.delivered_bits / 1e6,
            l.limit_bytes,
            l.max_backlog_bytes,
            l.delay_p50_ms,
            l.delay_p95_ms,
            l.delay_p99_ms,
            l.packets,
            l.drops,
            l.marks
        );
    }
    for f in &r.flows {
        eprintln!(
            "flow {} ({}): {:.2} Mbit/s, {} bytes, {} retransmits, intact {}, limited by {} \
             (receive window {:.0}%, send buffer {:.0}% of busy time)",
            f.name,
            f.cc,
            f.goodput_mbps,
            f.bytes,
            f.retransmits,
            f.intact,
            f.limited_by.name(),
            f.rwnd_limited * 100.0,
            f.sndbuf_limited * 100.0
        );
    }
    eprintln!(
        "jain {:.3}, loss rate {:.4}, {} flow samples, {} queue samples",
        r.jain,
        r.loss_rate,
        r.flow_series.len(),
        r.queue_series.len()
    );
}

/// None of this process's namespaces are left.
fn assert_no_namespaces() {
    let left = kernel::own_namespaces();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let mine = format!("plab-{}-", std::process::id());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(!listed.contains(&mine), "ip netns list: {listed}");
}

const ONE_CUBIC: &str = r#"
name = "kernel-one"
duration = "3s"
sample = "100ms"

[[link]]
bandwidth = "20Mbit"
delay = "10ms"
queue = "1bdp"
qdisc = "drop_tail"

[[flow]]
cc = "cubic"
"#;

#[test]
fn one_cubic_flow_fills_a_drop_tail_bottleneck() {
    let Some(_serial) = can_run() else {
        return;
    };
    let r = run("one", ONE_CUBIC).unwrap();
    print_row(&r);
    assert_eq!(r.engine, Engine::Kernel);
    assert_eq!(r.scenario, "kernel-one");
    assert_eq!(r.point, "base");
    let l = &r.links[0];
    let f = &r.flows[0];
    assert!(f.intact, "stream corrupted");
    assert!(f.goodput_mbps > 0.0 && f.bytes > 0);
    assert!(
        (0.5..=1.05).contains(&l.utilisation),
        "utilisation {}",
        l.utilisation
    );
    // 20 Mbit/s * 20 ms = 50 kB; the queue never holds more than that plus a packet.
    assert_eq!(l.limit_bytes, 50_000);
    assert!(
        l.max_backlog_bytes <= l.limit_bytes + 1500,
        "{}",
        l.max_backlog_bytes
    );
    for q in &r.queue_series {
        assert!(q.backlog_bytes <= l.limit_bytes + 1500, "{q:?}");
    }
    assert!(
        r.flow_series.len() >= 25,
        "{} flow samples",
        r.flow_series.len()
    );
    assert!(r.queue_series.len() >= 25);
    // The kernel's RTT estimate: at least the path's 20 ms, at most that plus a full queue
    // (20 ms at 20 Mbit/s) and some slack for the delay lines' scheduling.
    let srtts: Vec<f64> = r
        .flow_series
        .iter()
        .map(|s| s.srtt_ms)
        .filter(|&x| x > 0.0)
        .collect();
    assert!(!srtts.is_empty());
    assert!(
        srtts.iter().all(|&x| (19.0..=60.0).contains(&x)),
        "srtt samples {srtts:?}"
    );
    assert!(r.flow_series.iter().any(|s| s.cwnd_bytes > 0));
    assert_no_namespaces();
}

#[test]
fn two_flows_share_a_bottleneck_and_a_missing_qdisc_is_named() {
    let Some(_serial) = can_run() else {
        return;
    };
    // fq_codel where the kernel has it; otherwise the error names it and the two flows
    // share a drop-tail queue instead.
    let fq = ONE_CUBIC
        .replace("name = \"kernel-one\"", "name = \"kernel-two\"")
        .replace(
            "qdisc = \"drop_tail\"",
            "qdisc = \"fq_codel\"\nqueue = \"100p\"",
        )
        .replace("queue = \"1bdp\"\n", "")
        .replace(
            "cc = \"cubic\"",
            "cc = \"cubic\"\ncount = 2\nrtt = \"40ms\"",
        );
    let r = match run("two", &fq) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                e.contains("the kernel has no `fq_codel` qdisc"),
                "unexpected error: {e}"
            );
            eprintln!("{e}\n(running the two flows over drop_tail instead)");
            assert_no_namespaces();
            let dt = fq.replace("qdisc = \"fq_codel\"", "qdisc = \"drop_tail\"");
            run("two-dt", &dt).unwrap()
        }
    };
    print_row(&r);
    assert_eq!(r.flows.len(), 2);
    assert!(r.flows.iter().all(|f| f.intact && f.goodput_mbps > 0.0));
    let l = &r.links[0];
    assert!(
        (0.5..=1.05).contains(&l.utilisation),
        "utilisation {}",
        l.utilisation
    );
    assert!(l.max_backlog_bytes <= l.limit_bytes + 1500);
    // 40 ms RTT over a 20 ms path: 10 ms of access delay each way.
    let srtt_min = r
        .flow_series
        .iter()
        .filter(|s| s.srtt_ms > 0.0)
        .map(|s| s.srtt_ms)
        .fold(f64::INFINITY, f64::min);
    assert!((39.0..60.0).contains(&srtt_min), "smallest srtt {srtt_min}");
    assert_no_namespaces();
}

#[test]
fn a_missing_cc_module_is_an_error_naming_the_flow() {
    let Some(_serial) = can_run() else {
        return;
    };
    let text = ONE_CUBIC.replace("cc = \"cubic\"", "cc = \"cubic\"\n\n[[flow]]\ncc = \"chd\"");
    let e = run("nocc", &text).unwrap_err();
    assert!(e.starts_with("flow[1]: `chd` has no counterpart"), "{e}");
    assert_no_namespaces();
}

/// A chain of two links (the second the bottleneck, its capacity on a schedule, the first
/// lossy and jittery), and every kind of application: a sized BBR transfer, on/off,
/// request/response, and a bulk flow whose receiver's buffer is small and fixed.
#[test]
fn a_chain_with_a_schedule_and_every_application() {
    let Some(_serial) = can_run() else {
        return;
    };
    let text = r#"
name = "kernel-chain"
duration = "4s"
sample = "100ms"

[[link]]
name = "access"
bandwidth = "100Mbit"
delay = "5ms"
jitter = "1ms"
loss = 0.01
queue = "1bdp"

[[link]]
name = "bottleneck"
schedule = [{ at = "0s", bandwidth = "20Mbit" }, { at = "2s", bandwidth = "10Mbit" }]
delay = "10ms"
queue = "1bdp"

[[flow]]
name = "sized"
cc = "bbr"
size = "1MB"

[[flow]]
name = "onoff"
cc = "cubic"
app = "on_off"
on = "500ms"
off = "500ms"
start = "500ms"

[[flow]]
name = "rr"
cc = "newreno"
app = "request_response"
request = "1KB"
response = "100KB"
think = "50ms"
rtt = "50ms"

[[flow]]
name = "small-window"
cc = "cubic"
sysctls = { recvspace = 8192, recvbuf_auto = 0, "cc.abe" = 1 }
"#;
    let r = run("chain", text).unwrap();
    print_row(&r);
    assert_eq!(r.flows.len(), 4);
    for f in &r.flows {
        assert!(f.intact && f.bytes > 0, "{f:?}");
    }
    let sized = &r.flows[0];
    assert_eq!(sized.bytes, 1_000_000);
    let fct = sized.fct_s.expect("the sized flow completes");
    assert!(fct > 0.3 && fct < 4.0, "fct {fct}");
    assert_eq!(r.flows[1].limited_by.name(), "application");
    assert_eq!(r.flows[2].limited_by.name(), "application");
    assert_eq!(r.flows[2].cc, "newreno");
    // recvspace and recvbuf_auto became tcp_rmem and tcp_moderate_rcvbuf in its hosts.
    assert_eq!(
        r.flows[3].limited_by.name(),
        "receive window",
        "{:?}",
        r.flows[3]
    );
    // 20 Mbit/s for 2 s, then 10.
    let b = &r.links[1];
    assert_eq!(b.capacity_bits, 60e6);
    assert!(b.delivered_bits <= b.capacity_bits * 1.05);
    assert_eq!(r.bottleneck, 1);
    assert!(r.links[0].random_losses > 0, "{:?}", r.links[0]);
    assert!(r.links[0].utilisation < 0.5);
    assert_no_namespaces();
}

/// `plugtcp lab run --kernel`: the same scenario (cubic on both sides) on the simulator and
/// on the kernel, one summary row each, both written to the results directory.
#[test]
fn lab_run_kernel_prints_both_rows() {
    let Some(_serial) = can_run() else {
        return;
    };
    let path = write_scenario("cli", &ONE_CUBIC.replace("kernel-one", "side by side"));
    let out_dir = path.parent().unwrap().join("out");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plugtcp"))
        .args(["lab", "run"])
        .arg(&path)
        .arg("-o")
        .arg(&out_dir)
        .arg("--kernel")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| base |"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows[0].starts_with("| base | plugtcp |"), "{stdout}");
    assert!(rows[1].starts_with("| base | kernel |"), "{stdout}");
    // Both rows fill most of the 20 Mbit/s link.
    for r in &rows {
        let util: f64 = r
            .split('|')
            .nth(4)
            .unwrap()
            .trim()
            .split('%')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((50.0..=100.5).contains(&util), "{r}");
    }
    let summary = std::fs::read_to_string(out_dir.join("summary.csv")).unwrap();
    assert!(
        summary.lines().any(|l| l.starts_with("base,kernel,")),
        "{summary}"
    );
    assert!(out_dir.join("report.html").is_file());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    assert_no_namespaces();
}

/// Flows of different RTTs share the first link's delay line: each keeps its own RTT (a
/// short-RTT flow's packets never wait behind a long-RTT flow's).
#[test]
fn flows_keep_their_own_rtts_through_a_shared_delay_line() {
    let Some(_serial) = can_run() else {
        return;
    };
    let r = run(
        "rtts",
        r#"
name = "kernel-rtts"
duration = "3s"
[[link]]
bandwidth = "50Mbit"
delay = "5ms"
queue = "1bdp"
[[flow]]
cc = "cubic"
rtt = "20ms"
start = "1s"
[[flow]]
cc = "cubic"
rtt = "80ms"
"#,
    )
    .unwrap();
    print_row(&r);
    let min_srtt = |flow: usize| {
        r.flow_series
            .iter()
            .filter(|s| s.flow == flow && s.srtt_ms > 0.0)
            .map(|s| s.srtt_ms)
            .fold(f64::INFINITY, f64::min)
    };
    let (short, long) = (min_srtt(0), min_srtt(1));
    eprintln!("smallest srtt: {short:.1} ms and {long:.1} ms");
    // The queue (1 BDP of the 20 ms RTT) adds at most 20 ms. (Had the short flow's packets
    // waited behind the long flow's, already sending when it starts, its RTT would be
    // the long one's.)
    assert!((19.0..45.0).contains(&short), "{short}");
    assert!((79.0..110.0).contains(&long), "{long}");
    assert!(r.flows.iter().all(|f| f.intact && f.bytes > 0));
    assert_no_namespaces();
}
