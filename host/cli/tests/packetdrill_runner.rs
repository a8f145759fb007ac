//! The packetdrill runner reports failures as packetdrill does: scripts that must fail (a
//! wrong window, a missing packet, an unexpected errno, a timing outside tolerance, a
//! construct the runner does not support) fail with `SCRIPT:LINE: error ...` naming their
//! line, and the command line sums several scripts up, honours `.exfail`, and writes JSON,
//! a verbose log and a capture.

use std::path::PathBuf;
use std::process::Command;

use plugtcp_cli::packetdrill::{run_text, RunOptions, Verdict};

/// A passive open to the point where the connection is accepted; lines 1-8.
const OPEN: &str = "\
--tolerance_usecs=10000
0.000 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0 bind(3, ..., ...) = 0
+0 listen(3, 1) = 0
+0 < S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>
+0 > S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 100>
+.1 < . 1:1(0) ack 1 win 1026 <nop,nop,TS val 200 ecr 100>
";

fn run(tail: &str) -> (Verdict, String) {
    let text = format!("{OPEN}{tail}");
    let r = run_text("t.pkt", &text, &RunOptions::default());
    (r.verdict, r.error.unwrap_or_default())
}

/// The script's line `n` (1-based) must be where the failure is reported.
fn assert_fails_at(tail: &str, line: usize, needle: &str) {
    let (verdict, err) = run(tail);
    assert_eq!(verdict, Verdict::Fail, "the script passed:\n{tail}");
    let head = format!("t.pkt:{line}: ");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&head) && first.contains("error"),
        "want {head}... error ..., got:\n{err}"
    );
    assert!(err.contains(needle), "want {needle:?} in:\n{err}");
}

#[test]
fn a_correct_script_passes() {
    let (verdict, err) = run("+0 accept(3, ..., ...) = 4\n\
         +0 < P. 1:1001(1000) ack 1 win 1026 <nop,nop,TS val 300 ecr 100>\n\
         +0 read(4, ..., 1000) = 1000\n\
         +.04 > . 1:1(0) ack 1001 win 1027 <nop,nop,TS val 140 ecr 300>\n");
    assert_eq!(verdict, Verdict::Pass, "{err}");
}

#[test]
fn a_wrong_window_fails_on_its_line_with_both_packets() {
    assert_fails_at(
        "+0 accept(3, ..., ...) = 4\n\
         +0 < P. 1:1001(1000) ack 1 win 1026 <nop,nop,TS val 300 ecr 100>\n\
         +0 read(4, ..., 1000) = 1000\n\
         +.04 > . 1:1(0) ack 1001 win 999 <nop,nop,TS val 140 ecr 300>\n",
        12,
        "tcp_window: expected: 999 (0x3e7) vs actual: 1027",
    );
    let (_, err) = run("+0 accept(3, ..., ...) = 4\n\
         +0 < P. 1:1001(1000) ack 1 win 1026 <nop,nop,TS val 300 ecr 100>\n\
         +0 read(4, ..., 1000) = 1000\n\
         +.04 > . 1:1(0) ack 1001 win 999 <nop,nop,TS val 140 ecr 300>\n");
    assert!(err.contains("script packet:"), "{err}");
    assert!(err.contains("actual packet:"), "{err}");
    assert!(err.contains("win 1027"), "{err}");
}

#[test]
fn a_missing_packet_fails_on_its_line() {
    // Nothing is sent on an idle connection: the FIN the script waits for never comes.
    assert_fails_at(
        "+0 accept(3, ..., ...) = 4\n+1 > F. 1:1(0) ack 1 <...>\n",
        10,
        "timed out waiting for packet",
    );
}

#[test]
fn an_unexpected_errno_fails_on_its_line() {
    assert_fails_at(
        "+0 accept(3, ..., ...) = 4\n\
         +0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n\
         +0 read(4, ..., 100) = -1 ECONNRESET (Connection reset by peer)\n",
        11,
        "runtime error in read call: Expected errno ECONNRESET",
    );
    // A call that fails where the script expects success: listen(2) on a connected
    // socket is EINVAL in FreeBSD (solisten_proto_check).
    assert_fails_at(
        "+0 accept(3, ..., ...) = 4\n+0 listen(4, 1) = 0\n",
        10,
        "Expected result 0 but got -1 with errno EINVAL",
    );
}

#[test]
fn a_packet_outside_the_tolerance_fails_as_a_timing_error() {
    // The delayed ACK comes at +40 ms; the script says +200 ms with 10 ms of tolerance.
    assert_fails_at(
        "+0 accept(3, ..., ...) = 4\n\
         +0 < P. 1:1001(1000) ack 1 win 1026 <nop,nop,TS val 300 ecr 100>\n\
         +0 read(4, ..., 1000) = 1000\n\
         +.2 > . 1:1(0) ack 1001 win 1027 <nop,nop,TS val 140 ecr 300>\n",
        12,
        "timing error",
    );
}

#[test]
fn an_unsupported_construct_fails_naming_it_and_its_line() {
    // An SCTP chunk: the language has it, plugtcp does not.
    let (verdict, err) = run("+0 < sctp: DATA[flgs=BE, len=1016, tsn=1, sid=0, ssn=0, ppid=0]\n");
    assert_eq!(verdict, Verdict::Fail);
    assert!(err.starts_with("t.pkt:9:"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Python beyond the built-in evaluator.
    let (verdict, err) = run("+0 %{ import os }%\n");
    assert_eq!(verdict, Verdict::Fail);
    assert!(err.starts_with("t.pkt:9: error"), "{err}");
    assert!(err.contains("unsupported"), "{err}");
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let (verdict, err) = run("+0 accept(3, ..., ...) = 4\n+0 < P. 1:1001(1000) ack x win 1\n");
    assert_eq!(verdict, Verdict::Fail);
    assert!(err.starts_with("t.pkt:10: "), "{err}");
    assert!(err.contains("error"), "{err}");
}

#[test]
fn non_fatal_packet_failures_become_warnings() {
    let text = format!(
        "{OPEN}+0 accept(3, ..., ...) = 4\n\
         +0 < P. 1:1001(1000) ack 1 win 1026 <nop,nop,TS val 300 ecr 100>\n\
         +.04 > . 1:1(0) ack 1001 win 999 <nop,nop,TS val 140 ecr 300>\n"
    );
    let opts = RunOptions {
        non_fatal: vec!["packet".into()],
        ..Default::default()
    };
    let r = run_text("t.pkt", &text, &opts);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.error);
    assert!(
        r.warnings.iter().any(|w| w.starts_with("t.pkt:11:")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn the_block_under_test_is_defined_for_ifdef() {
    let script = "+0 accept(3, ..., ...) = 4\n\
         #ifdef RACK\n\
         +0 getsockopt(4, IPPROTO_TCP, TCP_FUNCTION_BLK, {function_set_name=\"rack\", pcbcnt=...}, [36]) = 0\n\
         #else\n\
         +0 getsockopt(4, IPPROTO_TCP, TCP_FUNCTION_BLK, {function_set_name=\"base\"}, [36]) = 0\n\
         #endif\n";
    for stack in ["base", "rack"] {
        let opts = RunOptions {
            stack: Some(stack.into()),
            ..Default::default()
        };
        let r = run_text("t.pkt", &format!("{OPEN}{script}"), &opts);
        assert_eq!(r.verdict, Verdict::Pass, "{stack}: {:?}", r.error);
    }
}

// ---- the command line -------------------------------------------------------------

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("plugtcp-pd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn plugtcp(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plugtcp"))
        .arg("packetdrill")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD_TAIL: &str = "+0 accept(3, ..., ...) = 4\n";
const BAD_TAIL: &str = "+0 accept(3, ..., ...) = 4\n+0 listen(4, 1) = 0\n";

#[test]
fn several_scripts_get_a_line_each_and_a_summary() {
    let d = scratch("summary");
    let good = d.join("good.pkt");
    let bad = d.join("bad.pkt");
    let known = d.join("known.pkt");
    std::fs::write(&good, format!("{OPEN}{GOOD_TAIL}")).unwrap();
    std::fs::write(&bad, format!("{OPEN}{BAD_TAIL}")).unwrap();
    std::fs::write(&known, format!("{OPEN}{BAD_TAIL}")).unwrap();
    std::fs::write(d.join("known.pkt.exfail"), "listen(2) on a connection\n").unwrap();

    let (code, out, err) = plugtcp(&[good.as_os_str(), bad.as_os_str(), known.as_os_str()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("pass             {}", good.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("FAIL             {}", bad.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("expected failure {}", known.display())),
        "{out}"
    );
    assert!(out.contains("2 passed, 1 failed"), "{out}");
    assert!(
        err.contains(&format!(
            "{}:10: runtime error in listen call",
            bad.display()
        )),
        "{err}"
    );

    // All good (the expected failure counts as good): exit 0.
    let (code, out, _) = plugtcp(&[good.as_os_str(), known.as_os_str()]);
    assert_eq!(code, 0, "{out}");
    // An .exfail script that passes is a failure: the file must go.
    std::fs::write(&known, format!("{OPEN}{GOOD_TAIL}")).unwrap();
    let (code, out, _) = plugtcp(&[good.as_os_str(), known.as_os_str()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("UNEXPECTED PASS"), "{out}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn json_verbose_and_pcap() {
    let d = scratch("json");
    let good = d.join("good.pkt");
    let bad = d.join("bad.pkt");
    std::fs::write(&good, format!("{OPEN}{GOOD_TAIL}")).unwrap();
    std::fs::write(&bad, format!("{OPEN}{BAD_TAIL}")).unwrap();

    let (code, out, _) = plugtcp(&["--json".as_ref(), good.as_os_str(), bad.as_os_str()]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["passed"], 1);
    assert_eq!(v["failed"], 1);
    assert_eq!(v["scripts"][0]["verdict"], "pass");
    assert_eq!(v["scripts"][1]["verdict"], "fail");
    let e = v["scripts"][1]["error"].as_str().unwrap();
    assert!(e.contains(":10: runtime error in listen call"), "{e}");

    // --verbose: every event with its virtual time.
    let (code, out, _) = plugtcp(&["--verbose".as_ref(), good.as_os_str()]);
    assert_eq!(code, 0);
    assert!(out.contains("0.1 line 8: inject < . 1:1(0) ack 1"), "{out}");
    assert!(out.contains("line 7: sniffed > S. 0:0(0) ack 1"), "{out}");

    // --pcap: a capture file with the handshake's three packets.
    let cap = d.join("c.pcap");
    let (code, _, err) = plugtcp(&["--pcap".as_ref(), cap.as_os_str(), good.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&cap).unwrap();
    assert_eq!(
        &bytes[..4],
        &0xa1b2_3c4d_u32.to_le_bytes(),
        "pcap magic (ns)"
    );
    // Global header 24 bytes, then per packet a 16-byte record header and the packet.
    let (mut off, mut n) = (24, 0);
    while off + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + len;
        n += 1;
    }
    assert_eq!(n, 3, "packets in the capture");
    std::fs::remove_dir_all(&d).unwrap();
}
