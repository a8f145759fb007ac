//! Every control command against a running `plugtcp serve` through its control socket:
//! kldload, kldstat, kldunload (EBUSY, -f), sysctl (get, set, -a, ENOENT, EINVAL), sockstat,
//! tcpsso (ok, ESRCH, ENOPROTOOPT, EINVAL) and tcpdrop on a live download; a malformed request
//! answered with an error while the host carries on; and the socket refusing another user.
//! (cc_template.rs and tcp_info.rs cover a template CC taking over a download and tcpdrop's
//! effect on the client; this file covers the rest.)

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_plugtcp");

use common::{ctl, ok};

/// The command failed with exactly one line on stderr, naming `errno`, and printed nothing.
fn refused(o: &Output, errno: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "succeeded: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("plugtcp: ") && err.contains(errno), "{err}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

fn json(o: &Output) -> Vec<Value> {
    serde_json::from_str(&ok(o)).unwrap()
}

fn kldstat(sock: &Path) -> Vec<Value> {
    json(&ctl(sock, &["kldstat", "--json"]))
}

fn kld_row(sock: &Path, name: &str) -> Option<Value> {
    kldstat(sock).into_iter().find(|r| r["name"] == name)
}

/// A `serve --io udp --service http --control SOCK` in a directory of its own, stopped (and
/// the directory removed) on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
}

impl Server {
    fn start(tag: &str, port_offset: u16, extra: &[&str], files: &[(&str, Vec<u8>)]) -> Self {
        let dir = std::env::temp_dir().join(format!("plugtcp-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in files {
            std::fs::write(dir.join(name), data).unwrap();
        }
        let sock = dir.join("control.sock");
        let port = Self::udp_port(port_offset);
        let child = common::spawn_udp_http_server(&dir, port, Some(&sock), extra);
        Server { child, dir, sock }
    }

    fn udp_port(offset: u16) -> u16 {
        20000 + (std::process::id() % 20000) as u16 + offset
    }

    /// SIGTERM, and whether it exited cleanly.
    fn stop(&mut self) -> bool {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap().success()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The download's row in sockstat once it has moved some data.
fn live_download(sock: &Path) -> Value {
    common::live_download(sock, 64 << 10)
}

fn conn_row(sock: &Path, remote: &str) -> Value {
    json(&ctl(sock, &["sockstat", "--json"]))
        .into_iter()
        .find(|r| r["remote"] == remote)
        .unwrap_or_else(|| panic!("no connection from {remote}"))
}

/// kld*, sysctl, sockstat, tcpsso and tcpdrop on a host serving a (slow) download: the
/// commands act on the live host, their refusals are one line with tcp(4)'s errno, and a
/// refused command changes nothing.
#[test]
fn every_command_acts_on_the_running_host() {
    let dl = 64 << 20;
    // 20 Mbit/s out of the server: the download outlasts the test.
    let mut srv = Server::start(
        "control",
        21,
        // cubic the default (tcp(4)'s is newreno): the kld commands below act on it.
        &[
            "--fault-out",
            "rate=20m,delay=5ms",
            "--sysctl",
            "cc.algorithm=cubic",
        ],
        &[("f.bin", common::payload(dl, 21))],
    );
    let sock = srv.sock.clone();

    // No connections yet: sockstat prints only its header, and an empty JSON list.
    assert_eq!(
        json(&ctl(&sock, &["sockstat", "--json"])),
        Vec::<Value>::new()
    );
    let text = ok(&ctl(&sock, &["sockstat"]));
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("State"), "{text}");

    let out = srv.dir.join("out.bin");
    let mut get = common::udp_get_command("f.bin", Server::udp_port(21), &out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let row = live_download(&sock);
    let remote = row["remote"].as_str().unwrap().to_string();

    // sysctl: a get, several at once, and -a.
    assert_eq!(
        ok(&ctl(&sock, &["sysctl", "net.inet.tcp.cc.algorithm"])),
        "net.inet.tcp.cc.algorithm: cubic\n"
    );
    assert_eq!(row["cc"], "cubic", "a new connection takes the default CC");
    assert_eq!(row["stack"], "base");
    assert_eq!(
        ok(&ctl(
            &sock,
            &[
                "sysctl",
                "net.inet.tcp.mssdflt",
                "net.inet.tcp.functions_default"
            ]
        )),
        "net.inet.tcp.mssdflt: 536\nnet.inet.tcp.functions_default: base\n"
    );
    let all = ok(&ctl(&sock, &["sysctl", "-a"]));
    // One `name: value` line per variable (a table's rows follow its name's line).
    let names: Vec<&str> = all
        .lines()
        .filter_map(|l| l.strip_prefix("net.inet.tcp.")?.split(": ").next())
        .collect();
    assert!(names.len() > 100, "{all}");
    for n in ["mssdflt", "cc.algorithm", "syncookies", "functions_default"] {
        assert!(names.contains(&n), "{n}: {all}");
    }
    assert!(
        all.lines().any(|l| l == "net.inet.tcp.mssdflt: 536"),
        "{all}"
    );

    // kldstat: the autoloaded files and the built-in blocks, the download counted on cubic.
    let cubic = kld_row(&sock, "cubic").unwrap();
    assert_eq!(cubic["kind"], "cc");
    assert!(
        cubic["file"]
            .as_str()
            .unwrap()
            .ends_with("/libplugtcp_cc_cubic.so"),
        "{cubic}"
    );
    assert!(cubic["pcbs"].as_u64() >= Some(1), "{cubic}");
    assert_eq!(kld_row(&sock, "base").unwrap()["kind"], "stack");
    let text = ok(&ctl(&sock, &["kldstat"]));
    assert!(text.starts_with(" Id Kind "), "{text}");
    assert_eq!(text.lines().count(), kldstat(&sock).len() + 1, "{text}");

    // kldload by path, then kldunload of a module nobody uses: gone from kldstat and from
    // net.inet.tcp.cc.available.
    let panic_so = common::target_dir().join("libplugtcp_testplugin_panic_cc.so");
    assert_eq!(
        ok(&ctl(&sock, &["kldload", panic_so.to_str().unwrap()])),
        format!("loaded cc panicky from {}\n", panic_so.display())
    );
    let p = kld_row(&sock, "panicky").unwrap();
    assert_eq!(
        (p["pcbs"].as_u64(), p["file"].as_str()),
        (Some(0), panic_so.to_str())
    );
    assert!(ok(&ctl(&sock, &["sysctl", "net.inet.tcp.cc.available"])).contains("panicky"));
    refused(
        &ctl(&sock, &["kldload", panic_so.to_str().unwrap()]),
        "EEXIST",
    );
    assert_eq!(
        ok(&ctl(&sock, &["kldunload", "panicky"])),
        "unloaded panicky\n"
    );
    assert!(kld_row(&sock, "panicky").is_none());
    assert!(!ok(&ctl(&sock, &["sysctl", "net.inet.tcp.cc.available"])).contains("panicky"));
    refused(&ctl(&sock, &["kldunload", "panicky"]), "ENOENT");

    // A module with a parameter: its sysctl appears, is set, and refuses a bad value.
    let reload_so = common::target_dir().join("libplugtcp_testplugin_reload_cc_v1.so");
    ok(&ctl(&sock, &["kldload", reload_so.to_str().unwrap()]));
    assert_eq!(kld_row(&sock, "reloadcc").unwrap()["version"], "1.0.0");
    let knob = "net.inet.tcp.cc.reloadcc.knob";
    assert_eq!(ok(&ctl(&sock, &["sysctl", knob])), format!("{knob}: 1\n"));
    assert_eq!(
        ok(&ctl(&sock, &["sysctl", &format!("{knob}=7")])),
        format!("{knob}: 1 -> 7\n")
    );
    let err = refused(&ctl(&sock, &["sysctl", &format!("{knob}=101")]), "EINVAL");
    assert!(err.contains("takes 0 to 100"), "the range named: {err}");
    refused(&ctl(&sock, &["sysctl", &format!("{knob}=seven")]), "EINVAL");
    let err = refused(
        &ctl(&sock, &["sysctl", "net.inet.tcp.keepcnt=-1"]),
        "EINVAL",
    );
    assert!(err.contains("takes 0 to"), "{err}");
    refused(&ctl(&sock, &["sysctl", "net.inet.tcp.nosuch"]), "ENOENT");
    refused(&ctl(&sock, &["sysctl", "net.inet.tcp.nosuch=1"]), "ENOENT");
    assert_eq!(ok(&ctl(&sock, &["sysctl", knob])), format!("{knob}: 7\n"));

    // tcpsso: the live download onto reloadcc; unknown connections and options refused.
    assert_eq!(
        ok(&ctl(
            &sock,
            &[
                "tcpsso",
                "127.0.0.1:8080",
                &remote,
                "TCP_CONGESTION",
                "reloadcc"
            ]
        )),
        format!("127.0.0.1:8080 {remote}: TCP_CONGESTION = reloadcc\n")
    );
    assert_eq!(conn_row(&sock, &remote)["cc"], "reloadcc");
    assert_eq!(kld_row(&sock, "reloadcc").unwrap()["pcbs"], 1);
    ok(&ctl(
        &sock,
        &["tcpsso", "127.0.0.1:8080", &remote, "TCP_NODELAY", "1"],
    ));
    refused(
        &ctl(
            &sock,
            &[
                "tcpsso",
                "127.0.0.1:8080",
                "127.0.0.1:1",
                "TCP_NODELAY",
                "1",
            ],
        ),
        "ESRCH",
    );
    refused(
        &ctl(
            &sock,
            &["tcpsso", "127.0.0.1:8080", &remote, "TCP_NOSUCH", "1"],
        ),
        "ENOPROTOOPT",
    );
    refused(
        &ctl(
            &sock,
            &["tcpsso", "127.0.0.1:8080", &remote, "TCP_KEEPIDLE", "soon"],
        ),
        "EINVAL",
    );
    assert_eq!(conn_row(&sock, &remote)["cc"], "reloadcc");

    // kldunload: EBUSY for the default and for a module in use (nothing changes); -f moves
    // the download to the default and removes the module and its sysctls.
    refused(&ctl(&sock, &["kldunload", "cubic"]), "EBUSY");
    refused(&ctl(&sock, &["kldunload", "reloadcc"]), "EBUSY");
    assert_eq!(kld_row(&sock, "reloadcc").unwrap()["pcbs"], 1);
    assert_eq!(conn_row(&sock, &remote)["cc"], "reloadcc");
    assert_eq!(
        ok(&ctl(&sock, &["kldunload", "-f", "reloadcc"])),
        "unloaded reloadcc\n"
    );
    assert!(kld_row(&sock, "reloadcc").is_none());
    let moved = conn_row(&sock, &remote);
    assert_eq!(
        (moved["cc"].as_str(), moved["state"].as_str()),
        (Some("cubic"), Some("ESTABLISHED"))
    );
    refused(&ctl(&sock, &["sysctl", knob]), "ENOENT");
    assert!(kld_row(&sock, "cubic").is_some());

    // The download kept moving through all of it; tcpdrop ends it, and a second one finds
    // nothing (tcp_info.rs checks what the client sees).
    let sent = moved["bytes_sent"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while conn_row(&sock, &remote)["bytes_sent"].as_u64().unwrap() <= sent {
        assert!(
            Instant::now() < deadline,
            "the download stalled after the moves"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        ok(&ctl(&sock, &["tcpdrop", "127.0.0.1:8080", &remote])),
        format!("127.0.0.1:8080 {remote}: dropped\n")
    );
    assert!(!get.wait().unwrap().success(), "the download was cut short");
    refused(
        &ctl(&sock, &["tcpdrop", "127.0.0.1:8080", "127.0.0.1:1"]),
        "ESRCH",
    );
    // TCP-MD5 keys: added, listed without the key, replaced, deleted; errors in one line.
    assert_eq!(
        ok(&ctl(&sock, &["md5key", "add", "192.0.2.7", "peer secret"])),
        "added 192.0.2.7\n"
    );
    ok(&ctl(&sock, &["md5key", "add", "10.0.0.0/8", "wide"]));
    let list = ok(&ctl(&sock, &["md5key", "list"]));
    assert_eq!(list, "192.0.2.7/32\n10.0.0.0/8\n");
    assert!(!list.contains("secret"));
    ok(&ctl(&sock, &["md5key", "del", "192.0.2.7"]));
    refused(&ctl(&sock, &["md5key", "del", "192.0.2.7"]), "ENOENT");
    refused(
        &ctl(&sock, &["md5key", "add", "10.0.0.1/33", "k"]),
        "EINVAL",
    );
    assert_eq!(ok(&ctl(&sock, &["md5key", "list"])), "10.0.0.0/8\n");
    assert!(srv.stop(), "serve exits cleanly");
    assert!(!sock.exists(), "socket removed on exit");
}

/// One raw request on the socket; the reply line parsed.
fn raw_request(sock: &Path, bytes: &[u8]) -> Value {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Garbage on the socket (not JSON, an unknown command, a request cut short) gets an error
/// reply of one line, and the host keeps answering.
#[test]
fn malformed_requests_get_an_error_and_the_host_carries_on() {
    let srv = Server::start("control-bad", 23, &[], &[]);
    for req in [
        &b"hello\n"[..],
        b"{\"Reboot\":{}}\n",
        b"{\"Sysctl\":{\"all\":true}}\n",
        b"{\"Kldst",
        b"\n",
    ] {
        let r = raw_request(&srv.sock, req);
        let what = String::from_utf8_lossy(req);
        assert_eq!(r["code"], 1, "{what}: {r}");
        assert_eq!(r["stdout"], "", "{what}: {r}");
        let err = r["stderr"].as_str().unwrap();
        assert!(
            err.starts_with("plugtcp: bad control request: ") && err.lines().count() == 1,
            "{what}: {err}"
        );
    }
    // A well-formed request on the same socket still works, raw and through the CLI.
    let r = raw_request(&srv.sock, b"{\"Kldstat\":{\"json\":true}}\n");
    assert_eq!(r["code"], 0, "{r}");
    let rows: Vec<Value> = serde_json::from_str(r["stdout"].as_str().unwrap()).unwrap();
    assert!(rows.iter().any(|r| r["name"] == "cubic"), "{rows:?}");
    assert_eq!(
        ok(&ctl(&srv.sock, &["sysctl", "net.inet.tcp.mssdflt"])),
        "net.inet.tcp.mssdflt: 536\n"
    );
}

/// The socket is its owner's only (0600, root here): as `nobody`, every command is refused
/// with one line of EACCES, and nothing changes on the host.
#[test]
fn another_user_is_refused() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("not root or no setpriv: skipping the permission test");
        return;
    }
    let srv = Server::start("control-perm", 25, &[], &[]);
    let meta = std::fs::metadata(&srv.sock).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (0, 0o600),
        "owned by root, for its owner only"
    );
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(EXE)
            .arg("--control")
            .arg(&srv.sock)
            .args(args)
            .output()
            .unwrap()
    };
    let o = as_nobody(&["kldstat"]);
    let err = String::from_utf8_lossy(&o.stderr);
    if err.starts_with("setpriv:") {
        // `nobody` may not reach the build directory: nothing to learn here.
        eprintln!("{err}: skipping the permission test");
        return;
    }
    let before = kldstat(&srv.sock);
    for args in [
        &["kldstat"][..],
        &["kldunload", "newreno"],
        &["sysctl", "net.inet.tcp.mssdflt=1000"],
    ] {
        let e = refused(&as_nobody(args), "EACCES");
        assert!(e.contains("permission denied"), "{args:?}: {e}");
        assert!(e.contains(srv.sock.to_str().unwrap()), "{args:?}: {e}");
    }
    assert_eq!(kldstat(&srv.sock), before);
    assert_eq!(
        ok(&ctl(&srv.sock, &["sysctl", "net.inet.tcp.mssdflt"])),
        "net.inet.tcp.mssdflt: 536\n"
    );
}

/// `serve --sysctl` sets what FreeBSD takes only at boot (the SYN cache's size) before the
/// host is built, and a plugin's variables after its plugins load; a bad one stops serve
/// with a line naming it.
#[test]
fn serve_sets_boot_tunables_at_start_up() {
    let srv = Server::start(
        "boot-tunables",
        7,
        &[
            "--sysctl",
            "syncache.bucketlimit=1",
            "--sysctl",
            "net.inet.tcp.syncache.hashsize=64",
            "--sysctl",
            "cc.algorithm=cubic",
        ],
        &[],
    );
    for (name, want) in [
        ("net.inet.tcp.syncache.bucketlimit", "1"),
        ("net.inet.tcp.syncache.hashsize", "64"),
        ("net.inet.tcp.syncache.cachelimit", "64"),
        ("net.inet.tcp.cc.algorithm", "cubic"),
    ] {
        assert_eq!(
            ok(&ctl(&srv.sock, &["sysctl", name])),
            format!("{name}: {want}\n")
        );
    }
    // At run time they stay read-only, as in FreeBSD.
    refused(
        &ctl(
            &srv.sock,
            &["sysctl", "net.inet.tcp.syncache.bucketlimit=5"],
        ),
        "EPERM",
    );
    let o = std::process::Command::new(EXE)
        .args(["serve", "--io", "udp", "--udp-bind", "127.0.0.1:0"])
        .args(["--sysctl", "syncache.bucketlimit=0", "--service", "echo"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("net.inet.tcp.syncache.bucketlimit=0") && err.contains("EINVAL"),
        "{err}"
    );
}
