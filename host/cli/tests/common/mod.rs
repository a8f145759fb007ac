//! Test fixtures shared by the host's integration tests: small function blocks, statically
//! linked and registered through the same ABI as plugin files.

#![allow(dead_code)]

use plugtcp_host::conn_table::ConnId;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use abi_stable::std_types::RStr;
use plugtcp_abi::cc::CC_ACK;
use plugtcp_abi::segment::SegIn;
use plugtcp_abi::sockopt::SockOpt;
use plugtcp_abi::stack::{
    tcp_func, tt, InitMode, OldStack, StackCtx, StackVtable, TcpFunctionBlockRef, TcpStack,
};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_cli::builtins::BuiltinHost as _;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;

/// Where cargo put the binary, hence the plugin `.so` files of this build.
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_plugtcp"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `cargo test` and `cargo build --release` on the example crate `examples/NAME`, as
/// its README says, into a target directory of its own; returns `cargo test`'s output and
/// the path of the library `FILE` it built.
pub fn build_example(name: &str, file: &str) -> (String, PathBuf) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = target_dir().join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut test_out = String::new();
    for step in ["test", "build"] {
        let out = std::process::Command::new(&cargo)
            .args([step, "--release", "--manifest-path"])
            .arg(repo.join("examples").join(name).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: cargo {step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if step == "test" {
            test_out = String::from_utf8_lossy(&out.stdout).into_owned();
        }
    }
    let lib = target.join("release").join(file);
    assert!(lib.exists(), "{}", lib.display());
    (test_out, lib)
}

/// A host whose search path is this build's target directory only.
pub fn host() -> Host {
    let (h, errors) = Host::with_plugins(SearchPath::new(&[target_dir()], None, None));
    assert!(errors.is_empty(), "autoload errors: {errors:?}");
    h
}

pub fn empty_host() -> Host {
    Host::empty(SearchPath::new(&[target_dir()], None, None))
}

/// The retransmit timer every fresh TestStack connection arms.
pub const REXMT_NS: u64 = 5_000_000;

pub static FINIS: AtomicUsize = AtomicUsize::new(0);
pub static SWITCH_FAILED: AtomicUsize = AtomicUsize::new(0);

/// A test stack: counts segments, feeds each to the CC as an ACK, refuses handoff when
/// `REFUSE` is set, and answers chg_query with its segment count.
pub struct TestStack<const I: usize> {
    pub segs: u32,
}

pub const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "nodefault"];
const ALIASES: [&[RStr<'static>]; 4] = [&[RStr::from_str("a")], &[], &[], &[]];

impl<const I: usize> TcpStack for TestStack<I> {
    const NAME: &'static str = NAMES[I];
    const ALIASES: &'static [RStr<'static>] = ALIASES[I];
    const FLAGS: u32 = if I == 3 { 0 } else { tcp_func::DEFAULT_OK };

    fn init(cx: &mut StackCtx, mode: InitMode, old: OldStack) -> Result<Self, Errno> {
        let mut segs = 0;
        if mode == InitMode::Switch {
            let mut q = plugtcp_abi::stack::ChgQuery {
                req: 99,
                ..Default::default()
            };
            if old.query(cx, &mut q)? {
                segs = q.req_param;
            }
        }
        if cx.tp.t_state == TcpState::Closed {
            cx.tp.t_state = TcpState::Established;
        }
        if mode == InitMode::Fresh {
            cx.host.timer_start(tt::REXMT, REXMT_NS);
        }
        Ok(TestStack { segs })
    }
    fn fini(self, _cx: &mut StackCtx, _purged: bool) {
        FINIS.fetch_add(1, Ordering::Relaxed);
    }
    fn do_segment(&mut self, cx: &mut StackCtx, seg: &SegIn<'_>) -> Result<(), Errno> {
        self.segs += 1;
        // Payload goes to the host's receive buffer, in order.
        let n = cx.host.rcv_write(0, &seg.payload);
        cx.host.rcv_commit(n);
        cx.cc.ccv.bytes_this_ack = seg.payload.len() as u32;
        cx.cc.ack_received(&mut cx.tp, CC_ACK);
        Ok(())
    }
    fn output(&mut self, _cx: &mut StackCtx) -> Result<(), Errno> {
        Ok(())
    }
    fn timer(&mut self, cx: &mut StackCtx, _which: u32) -> Result<(), Errno> {
        cx.cc.cong_signal(&mut cx.tp, plugtcp_abi::cc::CC_RTO);
        Ok(())
    }
    fn ctloutput(&mut self, _cx: &mut StackCtx, opt: &mut SockOpt<'_>) -> Result<(), Errno> {
        opt.reply_int(self.segs as i32)
    }
    fn handoff_ok(cx: &StackCtx) -> Result<(), Errno> {
        // Like RACK: no handoff mid-handshake.
        match cx.tp.t_state {
            TcpState::SynSent | TcpState::SynReceived => Err(Errno::EAGAIN),
            _ => Ok(()),
        }
    }
    fn switch_failed(&mut self, _cx: &mut StackCtx) -> Result<(), Errno> {
        SWITCH_FAILED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn chg_query(&self, _cx: &StackCtx, q: &mut plugtcp_abi::stack::ChgQuery) -> Result<(), Errno> {
        if q.req == 99 {
            q.req_param = self.segs;
            q.answered = 1;
        }
        Ok(())
    }
}

pub fn block<const I: usize>() -> TcpFunctionBlockRef {
    <StackVtable<TestStack<I>>>::BLOCK
}

/// A stack whose init always panics (a switch to it must fail and leave the old one).
pub struct PanicInit;
impl TcpStack for PanicInit {
    const NAME: &'static str = "paninit";
    fn init(_cx: &mut StackCtx, _mode: InitMode, _old: OldStack) -> Result<Self, Errno> {
        panic!("paninit: deliberate panic in init")
    }
    fn do_segment(&mut self, _cx: &mut StackCtx, _seg: &SegIn<'_>) -> Result<(), Errno> {
        Ok(())
    }
    fn output(&mut self, _cx: &mut StackCtx) -> Result<(), Errno> {
        Ok(())
    }
    fn timer(&mut self, _cx: &mut StackCtx, _which: u32) -> Result<(), Errno> {
        Ok(())
    }
    fn ctloutput(&mut self, _cx: &mut StackCtx, _opt: &mut SockOpt<'_>) -> Result<(), Errno> {
        Ok(())
    }
}

pub fn info() -> plugtcp_host::registry::PluginInfo {
    plugtcp_host::registry::PluginInfo {
        origin: plugtcp_host::registry::Origin::Builtin,
        version: "test".into(),
    }
}

/// Silences the panics tests provoke on purpose ("deliberate"), and only those.
pub fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("deliberate") {
            default(info);
        }
    }));
}

pub fn seg(payload: &[u8]) -> SegIn<'_> {
    SegIn {
        seq: 0,
        ack: 0,
        flags: plugtcp_abi::segment::th::ACK,
        win: 0,
        urp: 0,
        ip_ecn: 0,
        opts: Default::default(),
        payload: payload.into(),
    }
}

/// Deterministic pseudo-random bytes (xorshift64), so misplaced data does not match.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    plugtcp_cli::bench::pattern(len, seed)
}

/// `net.inet.tcp.cc.available` split into rows of words (header first).
pub fn cc_available_rows(h: &Host) -> Vec<Vec<String>> {
    h.sysctl
        .get("net.inet.tcp.cc.available")
        .unwrap()
        .to_string()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|r| !r.is_empty())
        .collect()
}

/// `plugtcp [--control SOCK] serve --io udp --service http` on 127.0.0.1 serving `root` on port
/// 8080, its UDP port from `udp_tunneling_port`, with `extra` arguments before `serve`'s own
/// (`--fault-out ...`). Returns the child once it printed its address.
pub fn spawn_udp_http_server(
    root: &std::path::Path,
    udp_port: u16,
    control: Option<&std::path::Path>,
    extra: &[&str],
) -> std::process::Child {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_plugtcp"));
    if let Some(sock) = control {
        cmd.arg("--control").arg(sock);
    }
    let mut server = cmd
        .args(["serve", "--io", "udp", "--udp-bind", "127.0.0.1:0"])
        .args(["--sysctl", &format!("udp_tunneling_port={udp_port}")])
        .args(extra)
        .args(["--service", "http", "--port", "8080", "--root"])
        .arg(root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "127.0.0.1:8080");
    server
}

/// `plugtcp get http://127.0.0.1:8080/PATH --io udp` to the server above, into `out`.
pub fn udp_get_command(path: &str, udp_port: u16, out: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_plugtcp"));
    cmd.args([
        "get",
        &format!("http://127.0.0.1:8080/{path}"),
        "--io",
        "udp",
    ])
    .args([
        "--udp-bind",
        "127.0.0.1:0",
        "--udp-peer-port",
        &udp_port.to_string(),
        "-o",
    ])
    .arg(out);
    cmd
}

/// A copy of function block `b` under another name and without aliases (leaked: descriptors
/// are 'static): the same stack, registered twice, so that a connection can switch between
/// two blocks that both carry data.
pub fn renamed_block(b: TcpFunctionBlockRef, name: &'static str) -> TcpFunctionBlockRef {
    block_variant(b, |d| d.name = RStr::from_str(name))
}

/// A copy of block `b`'s descriptor without aliases, changed by `f` (leaked: descriptors are
/// 'static).
pub fn block_variant(
    b: TcpFunctionBlockRef,
    f: impl FnOnce(&mut plugtcp_abi::stack::TcpFunctionBlock),
) -> TcpFunctionBlockRef {
    use abi_stable::prefix_type::WithMetadata;
    use abi_stable::std_types::RSlice;
    let mut d = plugtcp_abi::stack::TcpFunctionBlock {
        name: b.name(),
        aliases: RSlice::from_slice(&[]),
        flags: b.flags(),
        counters: b.counters(),
        init: b.init(),
        fini: b.fini(),
        do_segment: b.do_segment(),
        output: b.output(),
        timer: b.timer(),
        ctloutput: b.ctloutput(),
        handoff_ok: b.handoff_ok(),
        mtu_chg: b.mtu_chg(),
        switch_failed: b.switch_failed(),
        chg_query: b.chg_query(),
        info: b.info(),
        inherit: b.inherit(),
        params: b.params().unwrap_or_default(),
    };
    f(&mut d);
    let wm: &'static WithMetadata<plugtcp_abi::stack::TcpFunctionBlock> =
        Box::leak(Box::new(WithMetadata::new(d)));
    TcpFunctionBlockRef(wm.static_as_prefix())
}

/// B listens on :80, A connects; returns (A's slot, B's accepted slot) once established.
pub fn established(net: &mut plugtcp_io::simnet::SimNet) -> (ConnId, ConnId) {
    let b = plugtcp_io::simnet::ADDR_B;
    let lid = net.b.listen((b, 80).into(), 8).unwrap();
    let c = net.a.connect((b, 80).into(), None).unwrap();
    let mut s = None;
    assert!(net.run_until(5_000_000_000, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        s.is_some() && n.a.state(c) == Some(TcpState::Established)
    }));
    (c, s.unwrap())
}

/// Sends `data[from..]` from A's `c` (the rest was sent already) and reads all of `data` on
/// B's `s`, running the link; returns what B read.
pub fn pump(
    net: &mut plugtcp_io::simnet::SimNet,
    c: ConnId,
    s: ConnId,
    data: &[u8],
    from: usize,
    until: u64,
) -> Vec<u8> {
    let mut sent = from;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    net.run_until(until, |n| {
        while sent < data.len() {
            match n.a.send(c, &data[sent..]) {
                Ok(k) => sent += k,
                Err(_) => break,
            }
        }
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        got.len() >= data.len()
    });
    got
}

/// What [`transfer`] saw.
pub struct Transfer {
    /// Every byte arrived, in order (SHA-256 of what was read equals that of what was sent).
    pub intact: bool,
    pub got: usize,
    /// Longest virtual time with no new byte read, and the sender's RTO then (ns).
    pub longest_stall_ns: u64,
    pub rto_at_stall_ns: u64,
    /// The sum of what `tick` returned (e.g. the switches it made).
    pub ticks: usize,
}

/// Sends `len` pseudo-random bytes from A to B on :80 and closes; B reads to EOF. `tick`
/// runs between simulation steps with A's slot. Gives up at virtual time `deadline_ns`.
pub fn transfer(
    net: &mut plugtcp_io::simnet::SimNet,
    len: usize,
    deadline_ns: u64,
    mut tick: impl FnMut(&mut plugtcp_io::simnet::SimNet, ConnId) -> usize,
) -> Transfer {
    use sha2::{Digest, Sha256};
    let data = payload(len, 17);
    let server: std::net::SocketAddr = (plugtcp_io::simnet::ADDR_B, 80).into();
    let lid = net.b.listen(server, 8).unwrap();
    let c = net.a.connect(server, None).unwrap();
    let (mut sent, mut got, mut srv) = (0usize, 0usize, None);
    let mut rx = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut closed, mut eof) = (false, false);
    let (mut last_progress, mut stall, mut rto_at_stall, mut ticks) = (0u64, 0u64, 0u64, 0);
    net.run_until(deadline_ns, |n| {
        ticks += tick(n, c);
        if n.a.state(c) == Some(TcpState::Established) || sent > 0 {
            while sent < len {
                match n.a.send(c, &data[sent..]) {
                    Ok(k) if k > 0 => sent += k,
                    _ => break,
                }
            }
            if sent == len && !closed {
                n.a.close(c);
                closed = true;
            }
        }
        if srv.is_none() {
            srv = n.b.accept(lid).ok();
        }
        if let Some(s) = srv {
            loop {
                match n.b.recv(s, &mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(k) => {
                        rx.update(&buf[..k]);
                        got += k;
                        if got > k && n.now - last_progress > stall {
                            stall = n.now - last_progress;
                            rto_at_stall = n.a.tcpcb(c).map_or(0, |tp| tp.t_rxtcur as u64 * 1000);
                        }
                        last_progress = n.now;
                    }
                    Err(_) => break,
                }
            }
        }
        eof
    });
    Transfer {
        intact: got == len && rx.finalize().as_slice() == Sha256::digest(&data).as_slice(),
        got,
        longest_stall_ns: stall,
        rto_at_stall_ns: rto_at_stall,
        ticks,
    }
}

/// `plugtcp --control SOCK ARGS...` run to completion.
pub fn ctl(sock: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_plugtcp"))
        .arg("--control")
        .arg(sock)
        .args(args)
        .output()
        .unwrap()
}

/// The command's stdout, after asserting it succeeded (its stderr otherwise).
pub fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The row `plugtcp sockstat --json` shows for the download from the UDP HTTP server above
/// (local 127.0.0.1:8080, ESTABLISHED) once it has sent more than `min_sent` bytes; waits up
/// to 20 s.
pub fn live_download(sock: &std::path::Path, min_sent: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&ok(&ctl(sock, &["sockstat", "--json"]))).unwrap();
        if let Some(r) = rows.iter().find(|r| {
            r["state"] == "ESTABLISHED"
                && r["local"] == "127.0.0.1:8080"
                && r["bytes_sent"].as_u64() > Some(min_sent)
        }) {
            return r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no download seen: {rows:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
