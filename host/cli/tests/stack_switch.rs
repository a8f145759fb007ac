//! TCP_FUNCTION_BLK on live connections (FreeBSD tcp_functions(9), tcp(4)): every errno,
//! a switch in each TCP state a connection can be in, the `struct tcp_function_set` value,
//! TCP_FUNCTION_ALIAS, forced deregistration's fallback chain, and bytes intact across
//! switches.

mod common;

use common::*;
use plugtcp_abi::sockopt::{self, IPPROTO_TCP, TCP_FUNCTION_ALIAS, TCP_FUNCTION_BLK};
use plugtcp_abi::stack::{tcp_func, tt, InitMode, OldStack, StackCtx, TcpStack};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_cli::builtins::{BuiltinHost as _, BuiltinNet as _};
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::ctloutput::{function_set, parse_function_set, TCP_FUNCTION_SET_LEN};
use plugtcp_host::usrreq::Shutdown;
use plugtcp_host::Host;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// Two hosts with base, a copy of base named `base2`, and the test stacks alpha (alias `a`)
/// and beta.
fn net(seed: u64, loss: f64) -> SimNet {
    let mut net = SimNet::builtin(
        SimLinkConfig {
            delay_ns: 5 * MS,
            bandwidth_bps: 100_000_000,
            loss,
            seed,
            ..Default::default()
        },
        seed,
    );
    for h in [&mut net.a, &mut net.b] {
        let base = h.registry.snapshot().block("base").unwrap().block;
        h.registry
            .register_block(renamed_block(base, "base2"), info())
            .unwrap();
        h.registry.register_block(block::<0>(), info()).unwrap();
        h.registry.register_block(block::<1>(), info()).unwrap();
    }
    net
}

fn set_blk(h: &mut Host, c: ConnId, name: &str) -> Result<(), Errno> {
    h.setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, name.as_bytes())
}

/// setsockopt with FreeBSD's `struct tcp_function_set` as the value.
fn set_blk_struct(h: &mut Host, c: ConnId, name: &str) -> Result<(), Errno> {
    h.setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, &function_set(name, 0))
}

fn get_set(h: &mut Host, c: ConnId, opt: i32) -> (String, u32) {
    let mut b = [0u8; TCP_FUNCTION_SET_LEN];
    assert_eq!(
        h.getsockopt(c, IPPROTO_TCP, opt, &mut b),
        Ok(TCP_FUNCTION_SET_LEN)
    );
    parse_function_set(&b).unwrap()
}

fn users(h: &Host, name: &str) -> usize {
    h.registry.snapshot().block_any(name).unwrap().users()
}

fn timer_deadline(h: &Host, c: ConnId, which: u32) -> Option<u64> {
    h.timer_deadline(c, which)
}

fn in_flight(h: &Host, c: ConnId) -> bool {
    h.tcpcb(c).is_some_and(|tp| tp.snd_una != tp.snd_max)
}

/// base -> alpha -> base on connection `c` of `h`, in its current state: PCB counts move
/// with the connection, getsockopt reports the block and its count, the state is kept,
/// and base re-arms the retransmit timer when something is outstanding.
fn roundtrip(h: &mut Host, c: ConnId) {
    let state = h.state(c).unwrap();
    let (base0, alpha0) = (users(h, "base"), users(h, "alpha"));
    assert_eq!(
        get_set(h, c, TCP_FUNCTION_BLK),
        ("base".into(), base0 as u32)
    );
    set_blk_struct(h, c, "alpha").unwrap_or_else(|e| panic!("to alpha in {state:?}: {e}"));
    assert_eq!(
        (users(h, "base"), users(h, "alpha")),
        (base0 - 1, alpha0 + 1),
        "{state:?}"
    );
    assert_eq!(
        get_set(h, c, TCP_FUNCTION_BLK),
        ("alpha".into(), alpha0 as u32 + 1)
    );
    assert_eq!(h.state(c), Some(state), "a switch keeps the state");
    assert!(
        h.conns
            .get_by_id(c)
            .unwrap()
            .side
            .timers
            .iter()
            .all(Option::is_none),
        "{state:?}: base's timers stopped (alpha arms none in switch mode)"
    );
    set_blk(h, c, "base").unwrap_or_else(|e| panic!("back to base in {state:?}: {e}"));
    assert_eq!((users(h, "base"), users(h, "alpha")), (base0, alpha0));
    assert_eq!(h.state(c), Some(state));
    if in_flight(h, c) {
        let rexmt = timer_deadline(h, c, tt::REXMT);
        assert!(
            rexmt.is_some(),
            "{state:?}: base re-armed the retransmit timer for what is outstanding"
        );
    }
}

#[test]
fn errnos() {
    let mut net = net(1, 0.0);
    let (c, _s) = established(&mut net);
    let h = &mut net.a;
    // Unknown: ENOENT, nothing changes.
    assert_eq!(set_blk(h, c, "nosuch"), Err(Errno::ENOENT));
    assert_eq!(set_blk_struct(h, c, "nosuch"), Err(Errno::ENOENT));
    assert_eq!(get_set(h, c, TCP_FUNCTION_BLK).0, "base");
    // The block in use, by name or alias: 0 and a no-op (FreeBSD "You already have this").
    let base = users(h, "base");
    assert_eq!(set_blk(h, c, "base"), Ok(()));
    assert_eq!(set_blk(h, c, "default\0"), Ok(()));
    assert_eq!(users(h, "base"), base);
    // Departing (kldunload without -f of a block in use: EBUSY, and it stays BEING_REMOVED):
    // ENOENT.
    let d = h.new_conn().unwrap();
    h.setsockopt(d, IPPROTO_TCP, TCP_FUNCTION_BLK, b"beta")
        .unwrap();
    assert_eq!(h.kldunload("beta", false), Err(Errno::EBUSY));
    assert_eq!(set_blk(h, c, "beta"), Err(Errno::ENOENT));
    assert_eq!(set_blk_struct(h, c, "beta"), Err(Errno::ENOENT));
    assert_eq!(get_set(h, c, TCP_FUNCTION_BLK).0, "base");
    // A value that is not UTF-8: EINVAL; a short getsockopt buffer: EINVAL.
    assert_eq!(
        h.setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, &[0xff, 0xfe]),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.getsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, &mut [0u8; 32]),
        Err(Errno::EINVAL)
    );
    // No such connection (any more).
    let gone = h.new_conn().unwrap();
    h.abort(gone);
    assert_eq!(set_blk(h, gone, "base"), Err(Errno::EBADF));
}

/// The hooks of a test block that carries no traffic: segments, output and timers do
/// nothing, and it has no socket options.
macro_rules! inert_hooks {
    () => {
        fn do_segment(
            &mut self,
            _cx: &mut StackCtx,
            _seg: &plugtcp_abi::segment::SegIn<'_>,
        ) -> Result<(), Errno> {
            Ok(())
        }
        fn output(&mut self, _cx: &mut StackCtx) -> Result<(), Errno> {
            Ok(())
        }
        fn timer(&mut self, _cx: &mut StackCtx, _which: u32) -> Result<(), Errno> {
            Ok(())
        }
        fn ctloutput(
            &mut self,
            _cx: &mut StackCtx,
            _opt: &mut plugtcp_abi::sockopt::SockOpt<'_>,
        ) -> Result<(), Errno> {
            Err(Errno::ENOPROTOOPT)
        }
    };
}

/// A block whose handoff_ok refuses every live connection with an errno of its choosing.
struct Refuser;
impl TcpStack for Refuser {
    const NAME: &'static str = "refuser";
    const FLAGS: u32 = tcp_func::DEFAULT_OK;
    fn init(_cx: &mut StackCtx, _mode: InitMode, _old: OldStack) -> Result<Self, Errno> {
        Ok(Refuser)
    }
    inert_hooks!();
    fn handoff_ok(_cx: &StackCtx) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }
}

/// A block whose init fails in switch mode (and arms a timer first, which must not stay).
struct FailInit;
impl TcpStack for FailInit {
    const NAME: &'static str = "failinit";
    const FLAGS: u32 = tcp_func::DEFAULT_OK;
    fn init(cx: &mut StackCtx, mode: InitMode, _old: OldStack) -> Result<Self, Errno> {
        if mode == InitMode::Switch {
            cx.host.timer_start(tt::KEEP, 1);
            return Err(Errno::ENOMEM);
        }
        Ok(FailInit)
    }
    inert_hooks!();
}

fn register<S: TcpStack>(h: &Host) {
    h.registry
        .register_block(<plugtcp_abi::stack::StackVtable<S>>::BLOCK, info())
        .unwrap();
}

#[test]
fn handoff_errno_as_is_and_failed_init_keeps_the_old_stack() {
    let mut net = net(2, 0.0);
    // Without always_keepalive base arms no keepalive timer, so a KEEP timer left over
    // would be the failed init's.
    net.a
        .sysctl_set("net.inet.tcp.always_keepalive", "0")
        .unwrap();
    register::<Refuser>(&net.a);
    register::<FailInit>(&net.a);
    let (c, s) = established(&mut net);
    let data = payload(200_000, 3);
    // Data in flight, so base has its retransmit timer armed.
    let sent = net.a.send(c, &data[..100_000]).unwrap();
    let h = &mut net.a;
    assert!(in_flight(h, c));
    let rexmt = timer_deadline(h, c, tt::REXMT).expect("base armed REXMT");
    assert_eq!(set_blk(h, c, "refuser"), Err(Errno::EOPNOTSUPP));
    assert_eq!(get_set(h, c, TCP_FUNCTION_BLK).0, "base");
    assert_eq!(users(h, "refuser"), 0);
    // init fails: ENOMEM as is, the old stack keeps the connection with its timers back
    // (and nothing the failed init armed).
    let base = users(h, "base");
    assert_eq!(set_blk(h, c, "failinit"), Err(Errno::ENOMEM));
    assert_eq!(
        get_set(h, c, TCP_FUNCTION_BLK),
        ("base".into(), base as u32)
    );
    assert_eq!(users(h, "failinit"), 0);
    assert_eq!(
        timer_deadline(h, c, tt::REXMT),
        Some(rexmt),
        "timers re-armed"
    );
    assert_eq!(
        timer_deadline(h, c, tt::KEEP),
        None,
        "failed init's timer gone"
    );
    // The old stack still runs the connection: the rest goes through.
    let got = pump(&mut net, c, s, &data, sent, 20 * SEC);
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes intact after the failed switches");
}

#[test]
fn function_set_and_alias() {
    let mut net = net(3, 0.0);
    let (c, _s) = established(&mut net);
    let h = &mut net.a;
    let n = users(h, "base") as u32;
    assert_eq!(get_set(h, c, TCP_FUNCTION_BLK), ("base".into(), n));
    // Selected by name: the block's first alias; by alias: that alias; none: "".
    assert_eq!(get_set(h, c, TCP_FUNCTION_ALIAS), ("default".into(), n));
    set_blk(h, c, "a").unwrap();
    assert_eq!(get_set(h, c, TCP_FUNCTION_BLK), ("alpha".into(), 1));
    assert_eq!(get_set(h, c, TCP_FUNCTION_ALIAS), ("a".into(), 1));
    set_blk_struct(h, c, "alpha").unwrap();
    assert_eq!(
        get_set(h, c, TCP_FUNCTION_ALIAS),
        ("a".into(), 1),
        "alpha's first alias"
    );
    set_blk(h, c, "beta").unwrap();
    assert_eq!(get_set(h, c, TCP_FUNCTION_ALIAS), (String::new(), 1));
    // The struct's pcbcnt is ignored on the way in.
    let mut v = function_set("base", 12345);
    v[33] = 0xff;
    h.setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, &v).unwrap();
    assert_eq!(get_set(h, c, TCP_FUNCTION_BLK), ("base".into(), n));
    // A listener takes the struct too.
    let lid = h
        .listen((plugtcp_io::simnet::ADDR_A, 81).into(), 4)
        .unwrap();
    h.listener_setsockopt(lid, IPPROTO_TCP, TCP_FUNCTION_BLK, &function_set("a", 0))
        .unwrap();
    assert_eq!(
        h.listener_setsockopt(lid, IPPROTO_TCP, TCP_FUNCTION_BLK, &function_set("zz", 0)),
        Err(Errno::ENOENT)
    );
    assert_eq!(sockopt::TCP_FUNCTION_ALIAS, 8193, "FreeBSD netinet/tcp.h");
}

#[test]
fn switch_in_each_state() {
    let mut net = net(4, 0.0);

    // CLOSED, before connect: the socket takes the block and connects on it (alpha would
    // make up a state of its own, so the copy of base is used).
    let c0 = net.a.socket((ADDR_B, 80).into(), None).unwrap();
    set_blk(&mut net.a, c0, "base2").unwrap();
    assert_eq!(users(&net.a, "base2"), 1);
    let lid = net.b.listen((ADDR_B, 80).into(), 8).unwrap();
    net.a.start_connect(c0).unwrap();

    // SYN_SENT: alpha refuses (EAGAIN, like RACK) and nothing changes, timers included;
    // base never refuses.
    assert_eq!(net.a.state(c0), Some(TcpState::SynSent));
    let syn_rexmt = timer_deadline(&net.a, c0, tt::REXMT);
    assert_eq!(set_blk(&mut net.a, c0, "alpha"), Err(Errno::EAGAIN));
    assert_eq!(timer_deadline(&net.a, c0, tt::REXMT), syn_rexmt);
    set_blk(&mut net.a, c0, "base").unwrap();
    assert_eq!((users(&net.a, "base2"), users(&net.a, "alpha")), (0, 0));
    set_blk(&mut net.a, c0, "base2").unwrap();
    // (SYN_RCVD is not reachable: the syncache holds embryonic connections, which have no
    // socket until the handshake completes.)
    let mut s0 = None;
    assert!(net.run_until(5 * SEC, |n| {
        s0 = s0.or_else(|| n.b.accept(lid).ok());
        s0.is_some() && n.a.state(c0) == Some(TcpState::Established)
    }));
    let s0 = s0.unwrap();
    let data = payload(300_000, 5);
    assert_eq!(pump(&mut net, c0, s0, &data, 0, 20 * SEC), data);
    assert_eq!(get_set(&mut net.a, c0, TCP_FUNCTION_BLK).0, "base2");

    // ESTABLISHED with data in flight, on both ends.
    let c = net.a.connect((ADDR_B, 80).into(), None).unwrap();
    let mut s = None;
    assert!(net.run_until(net.now + 5 * SEC, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        s.is_some() && n.a.state(c) == Some(TcpState::Established)
    }));
    let s = s.unwrap();
    let data = payload(400_000, 6);
    let mut sent = 0;
    while let Ok(k) = net.a.send(c, &data[sent..]) {
        if k == 0 {
            break;
        }
        sent += k;
    }
    let now = net.now;
    net.run_until(now + 2 * MS, |_| false);
    assert!(in_flight(&net.a, c));
    roundtrip(&mut net.a, c);
    roundtrip(&mut net.b, s);
    // Between two stacks that both retransmit, a switch does not postpone the retransmit
    // timer (base's init arms a full RTO from now; the old deadline was sooner).
    let now = net.now;
    net.run_until(now + MS, |_| false);
    let before = timer_deadline(&net.a, c, tt::REXMT).expect("armed");
    for to in ["base2", "base"] {
        set_blk(&mut net.a, c, to).unwrap();
        let d = timer_deadline(&net.a, c, tt::REXMT).expect("re-armed");
        assert!(d <= before, "{to}: {d} > {before}");
    }
    // FIN_WAIT_1: shutdown with data still in flight.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut read = |n: &mut SimNet, got: &mut Vec<u8>| {
        while let Ok(k) = n.b.recv(s, &mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
    };
    let sending = |n: &mut SimNet, sent: &mut usize| {
        while *sent < data.len() {
            match n.a.send(c, &data[*sent..]) {
                Ok(k) if k > 0 => *sent += k,
                _ => break,
            }
        }
    };
    assert!(net.run_until(net.now + 20 * SEC, |n| {
        sending(n, &mut sent);
        read(n, &mut got);
        sent == data.len()
    }));
    net.a.shutdown(c, Shutdown::Write).unwrap();
    assert_eq!(net.a.state(c), Some(TcpState::FinWait1));
    roundtrip(&mut net.a, c);
    // FIN_WAIT_2 on A, CLOSE_WAIT on B.
    assert!(net.run_until(net.now + 20 * SEC, |n| {
        read(n, &mut got);
        n.a.state(c) == Some(TcpState::FinWait2) && n.b.state(s) == Some(TcpState::CloseWait)
    }));
    assert!(got == data, "bytes intact");
    roundtrip(&mut net.a, c);
    roundtrip(&mut net.b, s);
    // LAST_ACK on B, its FIN outstanding.
    net.b.shutdown(s, Shutdown::Write).unwrap();
    assert_eq!(net.b.state(s), Some(TcpState::LastAck));
    roundtrip(&mut net.b, s);
    // TIME_WAIT on A: still addressable, but only waiting out 2MSL: ECONNRESET (FreeBSD's
    // answer for a TIME_WAIT pcb), nothing changes.
    assert!(net.run_until(net.now + 20 * SEC, |n| n.a.state(c)
        == Some(TcpState::TimeWait)
        && n.b.state(s) != Some(TcpState::LastAck)));
    let base = users(&net.a, "base");
    assert_eq!(set_blk(&mut net.a, c, "alpha"), Err(Errno::ECONNRESET));
    assert_eq!(users(&net.a, "base"), base);
}

#[test]
fn switch_in_closing() {
    // Simultaneous close: both FINs cross, each end is in CLOSING until its FIN's ACK.
    let mut net = net(5, 0.0);
    let (c, s) = established(&mut net);
    net.a.shutdown(c, Shutdown::Write).unwrap();
    net.b.shutdown(s, Shutdown::Write).unwrap();
    assert!(net.run_until(net.now + 5 * SEC, |n| n.a.state(c)
        == Some(TcpState::Closing)));
    roundtrip(&mut net.a, c);
    assert!(net.run_until(net.now + 5 * SEC, |n| n.a.state(c)
        == Some(TcpState::TimeWait)));
}

#[test]
fn forced_deregistration_fallback_chain() {
    // (default, registered base?) -> where beta's users end up.
    for (default, with_base, expect) in [
        ("alpha", true, Some("alpha")),
        ("refuser", true, Some("base")),
        ("failinit", true, Some("base")),
        ("refuser", false, None),
    ] {
        let mut h = empty_host();
        if with_base {
            h.register_builtins();
        }
        h.registry.register_block(block::<0>(), info()).unwrap();
        h.registry.register_block(block::<1>(), info()).unwrap();
        register::<Refuser>(&h);
        register::<FailInit>(&h);
        let c = h.new_conn().unwrap();
        h.setsockopt(c, IPPROTO_TCP, TCP_FUNCTION_BLK, b"beta")
            .unwrap();
        h.registry.set_default_block(default).unwrap();
        assert_eq!(users(&h, "beta"), 1);
        // Not forced: EBUSY, the connection stays.
        assert_eq!(h.kldunload("beta", false), Err(Errno::EBUSY), "{default}");
        assert_eq!(get_set(&mut h, c, TCP_FUNCTION_BLK).0, "beta");
        // Forced: moved along the chain, or dropped when nothing takes it.
        h.kldunload("beta", true).unwrap();
        assert!(h.registry.snapshot().block_any("beta").is_none());
        match expect {
            Some(to) => {
                assert_eq!(get_set(&mut h, c, TCP_FUNCTION_BLK).0, to, "{default}");
                assert_eq!(users(&h, to), 1);
            }
            None => assert!(!h.conns.is_live(c), "dropped"),
        }
        // The default is never removed, forced or not.
        assert_eq!(h.kldunload(default, true), Err(Errno::EBUSY));
    }
}

#[test]
fn bytes_intact_across_switches() {
    // base <-> base2 every 5 ms of a transfer, on a link losing 1% of packets.
    let mut net = net(6, 0.01);
    let (c, s) = established(&mut net);
    let data = payload(4 << 20, 7);
    let (mut sent, mut got) = (0, Vec::new());
    let mut buf = vec![0u8; 65536];
    let mut next = net.now + 5 * MS;
    let mut switches = 0;
    let mut flip = false;
    let deadline = net.now + 120 * SEC;
    while got.len() < data.len() && net.now < deadline {
        net.run_until(next, |n| {
            while sent < data.len() {
                match n.a.send(c, &data[sent..]) {
                    Ok(k) if k > 0 => sent += k,
                    _ => break,
                }
            }
            while let Ok(k) = n.b.recv(s, &mut buf) {
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
            false
        });
        flip = !flip;
        let to = if flip { "base2" } else { "base" };
        set_blk(&mut net.a, c, to).unwrap();
        set_blk(&mut net.b, s, to).unwrap();
        switches += 1;
        next = net.now + 5 * MS;
    }
    assert!(switches > 20, "{switches} switches");
    assert_eq!(got.len(), data.len(), "transfer completed");
    assert!(got == data, "bytes intact");
}

#[test]
fn bench_stack_switch_with_a_copy_of_base() {
    let h = empty_host();
    h.register_builtins();
    let base = h.registry.snapshot().block("base").unwrap().block;
    let cfg = plugtcp_cli::bench::stack_switch::StackSwitchConfig {
        blocks: ["base".into(), "base3".into()],
        switches: 7,
        bytes: 16 << 20,
        ..Default::default()
    };
    let r = plugtcp_cli::bench::stack_switch::run(
        &cfg,
        &Default::default(),
        &[renamed_block(base, "base3")],
    )
    .unwrap();
    assert!(r.intact, "{r:?}");
    assert!(r.min_in_flight >= 1 << 20, "{r:?}");
    assert_eq!(r.samples_us.len(), 7);
    // An unregistered block is a clear error.
    let cfg = plugtcp_cli::bench::stack_switch::StackSwitchConfig {
        blocks: ["base".into(), "nosuch".into()],
        ..Default::default()
    };
    let e = plugtcp_cli::bench::stack_switch::run(&cfg, &Default::default(), &[]).unwrap_err();
    assert!(e.contains("no function block `nosuch`"), "{e}");
}

/// Options a block keeps in its private state come back on the next block after a live
/// switch (the host sets them again), and the quick-ACK mode, kept in the tcpcb, comes along.
#[test]
fn socket_options_survive_a_switch() {
    let mut net = net(61, 0.0);
    let (c, _s) = established(&mut net);
    let h = &mut net.a;
    let int = |v: i32| v.to_ne_bytes();
    let options = [
        (sockopt::TCP_WINDOW_CLAMP, 20_000),
        (sockopt::TCP_SYNCNT, 4),
        (sockopt::TCP_LINGER2, 17),
        (sockopt::TCP_QUICKACK, 1),
        (sockopt::TCP_NODELAY, 1),
        (sockopt::TCP_MAXSEG, 1200),
    ];
    for (name, v) in options {
        h.setsockopt(c, IPPROTO_TCP, name, &int(v)).unwrap();
    }
    for block in ["rack", "base", "rack"] {
        set_blk(h, c, block).unwrap();
        for (name, v) in options {
            // FreeBSD reads TCP_NODELAY back as its t_flags bit (TF_NODELAY, 4).
            let want = if name == sockopt::TCP_NODELAY { 4 } else { v };
            assert_eq!(
                h.getsockopt_int(c, IPPROTO_TCP, name),
                Ok(want),
                "option {name} after switching to {block}"
            );
        }
    }
}

/// Timer deliveries seen by [`TimerStopper`]: (which, at ns).
static STOPPER_FIRED: std::sync::Mutex<Vec<(u32, u64)>> = std::sync::Mutex::new(Vec::new());

/// A block that arms two timers due at the same instant; the first to fire stops the
/// second (REXMT) and the second re-arms... nothing: the host must not deliver the stopped
/// one, although the wheel collected both in the same pass.
struct TimerStopper;
impl TcpStack for TimerStopper {
    const NAME: &'static str = "timerstopper";
    const FLAGS: u32 = tcp_func::DEFAULT_OK;
    fn init(cx: &mut StackCtx, _mode: InitMode, _old: OldStack) -> Result<Self, Errno> {
        cx.host.timer_start(tt::DELACK, 1_000_000);
        cx.host.timer_start(tt::REXMT, 1_000_000);
        Ok(TimerStopper)
    }
    fn do_segment(
        &mut self,
        _cx: &mut StackCtx,
        _seg: &plugtcp_abi::segment::SegIn<'_>,
    ) -> Result<(), Errno> {
        Ok(())
    }
    fn output(&mut self, _cx: &mut StackCtx) -> Result<(), Errno> {
        Ok(())
    }
    fn timer(&mut self, cx: &mut StackCtx, which: u32) -> Result<(), Errno> {
        STOPPER_FIRED.lock().unwrap().push((which, cx.host.now()));
        if which == tt::DELACK {
            cx.host.timer_stop(tt::REXMT);
        }
        Ok(())
    }
    fn ctloutput(
        &mut self,
        _cx: &mut StackCtx,
        _opt: &mut plugtcp_abi::sockopt::SockOpt<'_>,
    ) -> Result<(), Errno> {
        Err(Errno::ENOPROTOOPT)
    }
}

#[test]
fn a_timer_stopped_by_an_earlier_one_in_the_same_pass_is_not_delivered() {
    let mut h = Host::with_seed(Default::default(), 5);
    h.register_builtins();
    register::<TimerStopper>(&h);
    h.sysctl_set("net.inet.tcp.functions_default", "timerstopper")
        .unwrap();
    let c = h.new_conn().unwrap();
    assert_eq!(
        get_set(&mut h, c, TCP_FUNCTION_BLK).0,
        "timerstopper",
        "the block under test runs the connection"
    );
    h.advance(5_000_000);
    let fired = STOPPER_FIRED.lock().unwrap().clone();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].0, tt::DELACK);
    assert_eq!(h.tcpcb(c).map(|tp| tp.t_state), Some(TcpState::Closed));
}
