//! Every registry rule, with the errno FreeBSD's tcp_functions(9) and mod_cc(9) return.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RSlice, RStr};
use common::*;
use plugtcp_abi::cc::CcAlgo;
use plugtcp_abi::stack::{TcpFunctionBlock, TcpFunctionBlockRef};
use plugtcp_abi::Errno;
use plugtcp_host::registry::Deregistered;

/// A copy of a test block with some fields changed (leaked: descriptors are 'static).
fn variant(f: impl FnOnce(&mut TcpFunctionBlock)) -> TcpFunctionBlockRef {
    common::block_variant(block::<0>(), |d| {
        d.name = RStr::from_str("variant");
        f(d)
    })
}

fn names(list: &'static [&'static str]) -> RSlice<'static, RStr<'static>> {
    let v: Vec<RStr<'static>> = list.iter().map(|s| RStr::from_str(s)).collect();
    RSlice::from_slice(Box::leak(v.into_boxed_slice()))
}

#[test]
fn block_registration_rules() {
    let h = empty_host();
    let r = &h.registry;
    // Missing required hooks: EINVAL, one hook at a time.
    for strip in 0..4 {
        let b = variant(|d| match strip {
            0 => d.do_segment = None,
            1 => d.output = None,
            2 => d.ctloutput = None,
            _ => d.handoff_ok = None,
        });
        assert_eq!(
            r.register_block(b, info()).err(),
            Some(Errno::EINVAL),
            "hook {strip}"
        );
    }
    assert_eq!(
        r.register_block(variant(|d| d.name = RStr::from_str("")), info())
            .err(),
        Some(Errno::EINVAL)
    );
    let long = "x".repeat(40).leak();
    assert_eq!(
        r.register_block(variant(|d| d.name = RStr::from_str(long)), info())
            .err(),
        Some(Errno::ENAMETOOLONG)
    );
    // Eight names are fine, nine are E2BIG.
    let eight = variant(|d| d.aliases = names(&["v1", "v2", "v3", "v4", "v5", "v6", "v7"]));
    assert!(r.register_block(eight, info()).is_ok());
    let nine = variant(|d| {
        d.name = RStr::from_str("nine");
        d.aliases = names(&["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"]);
    });
    assert_eq!(r.register_block(nine, info()).err(), Some(Errno::E2BIG));
    // Taken names: primary, alias of another, and a block repeating its own name.
    assert!(r.register_block(block::<0>(), info()).is_ok());
    assert_eq!(
        r.register_block(block::<0>(), info()).err(),
        Some(Errno::EALREADY)
    );
    let steals_alias = variant(|d| {
        d.name = RStr::from_str("thief");
        d.aliases = names(&["a"]);
    });
    assert_eq!(
        r.register_block(steals_alias, info()).err(),
        Some(Errno::EALREADY)
    );
    let self_dup = variant(|d| {
        d.name = RStr::from_str("twice");
        d.aliases = names(&["twice"]);
    });
    assert_eq!(
        r.register_block(self_dup, info()).err(),
        Some(Errno::EALREADY)
    );
    // Failed registrations left nothing behind.
    let s = r.snapshot();
    assert_eq!(s.blocks.len(), 2);
    assert!(s.block("thief").is_err() && s.block("nine").is_err());
    assert_eq!(
        s.block("a").unwrap().name,
        "alpha",
        "alias resolves to its block"
    );
}

#[test]
fn default_block_rules() {
    let h = empty_host();
    let r = &h.registry;
    r.register_block(block::<3>(), info()).unwrap(); // no DEFAULT_OK
    assert!(
        r.snapshot().default_block.is_none(),
        "a block without DEFAULT_OK never becomes the default"
    );
    r.register_block(block::<0>(), info()).unwrap();
    r.register_block(block::<1>(), info()).unwrap();
    assert_eq!(
        r.snapshot().default_block.as_ref().unwrap().name,
        "alpha",
        "first DEFAULT_OK block"
    );
    assert_eq!(r.set_default_block("nosuch"), Err(Errno::ENOENT));
    assert_eq!(r.set_default_block("nodefault"), Err(Errno::EINVAL));
    assert_eq!(r.set_default_block("beta"), Ok(()));
    assert_eq!(
        h.sysctl
            .get("net.inet.tcp.functions_default")
            .unwrap()
            .to_string(),
        "beta"
    );
    assert_eq!(
        h.sysctl
            .set("net.inet.tcp.functions_default", "nodefault")
            .err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        h.sysctl.set("net.inet.tcp.functions_default", "zzz").err(),
        Some(Errno::ENOENT)
    );
    h.sysctl.set("net.inet.tcp.functions_default", "a").unwrap();
    assert_eq!(
        r.snapshot().default_block.as_ref().unwrap().name,
        "alpha",
        "set by alias"
    );
    // A departing block cannot become the default.
    r.deregister_block("beta", false).unwrap();
    assert_eq!(r.set_default_block("beta"), Err(Errno::ENOENT));
}

#[test]
fn deregistration_freebsd_semantics() {
    let mut h = empty_host();
    h.registry.register_block(block::<0>(), info()).unwrap();
    h.registry.register_block(block::<1>(), info()).unwrap();
    let beta = h.registry.snapshot().block("beta").unwrap().clone();

    // The default is never removed.
    assert_eq!(h.kldunload("alpha", false), Err(Errno::EBUSY));
    assert_eq!(h.kldunload("alpha", true), Err(Errno::EBUSY));

    // Two connections on beta.
    let c1 = h.new_conn().unwrap();
    let c2 = h.new_conn().unwrap();
    for c in [c1, c2] {
        h.with_conn(c, |c, w| c.switch_stack(w, beta.clone()))
            .unwrap();
        h.with_conn(c, |c, w| c.do_segment(w, &seg(b"xyz")))
            .unwrap();
    }
    assert_eq!(beta.users(), 2);
    let alpha = h.registry.snapshot().block("alpha").unwrap().clone();
    assert_eq!(alpha.users(), 0);

    // In use: EBUSY, and from now on BEING_REMOVED: no new users, invisible to lookups.
    assert_eq!(h.kldunload("beta", false), Err(Errno::EBUSY));
    assert!(beta.being_removed());
    assert_eq!(
        h.registry.snapshot().block("beta").err(),
        Some(Errno::ENOENT)
    );
    assert_eq!(beta.acquire(), Err(Errno::ENOENT));
    let c3 = h.new_conn().unwrap();
    assert_eq!(
        h.with_conn(c3, |c, w| c.switch_stack(w, beta.clone())),
        Err(Errno::ENOENT)
    );
    assert!(h
        .kldstat()
        .iter()
        .any(|r| r.name == "beta" && r.being_removed && r.pcbs == 2));

    // Forced: the users move to the default (make-before-break: alpha's init read beta's
    // state through chg_query), then the block is gone.
    h.kldunload("beta", true).unwrap();
    assert_eq!(beta.users(), 0);
    assert_eq!(alpha.users(), 3);
    assert!(h.registry.snapshot().block_any("beta").is_none());
    for c in [c1, c2] {
        let conn = h.conns.get_by_id(c).unwrap();
        assert_eq!(conn.stack().unwrap().name, "alpha");
        let mut buf = [0u8; 4];
        let mut opt = plugtcp_abi::sockopt::SockOpt {
            level: 6,
            name: 0,
            dir: plugtcp_abi::sockopt::SockOptDir::Get,
            val: (&mut buf[..]).into(),
            len: 0,
        };
        h.with_conn(c, |c, w| c.ctloutput(w, &mut opt)).unwrap();
        assert_eq!(
            i32::from_ne_bytes(buf),
            1,
            "segment count carried over by chg_query"
        );
    }
    assert_eq!(h.kldunload("beta", false), Err(Errno::ENOENT));
}

#[test]
fn switch_checks_handoff_and_keeps_old_stack_on_failure() {
    let mut h = empty_host();
    h.registry.register_block(block::<0>(), info()).unwrap();
    h.registry.register_block(block::<1>(), info()).unwrap();
    h.registry
        .register_block(<plugtcp_abi::stack::StackVtable<PanicInit>>::BLOCK, info())
        .unwrap();
    quiet_panics();
    let snap = h.registry.load_full();
    let (alpha, beta, pan) = (
        snap.block("alpha").unwrap(),
        snap.block("beta").unwrap(),
        snap.block("paninit").unwrap(),
    );
    let c = h.new_conn().unwrap();
    let armed = |h: &plugtcp_host::Host| h.timer_deadline(c, 0);
    assert_eq!(armed(&h), Some(REXMT_NS), "alpha armed its timer in init");

    // handoff_ok's errno comes back as is; nothing changes.
    h.conns.get_by_id_mut(c).unwrap().ctx.tp.t_state = plugtcp_abi::TcpState::SynSent;
    assert_eq!(
        h.with_conn(c, |c, w| c.switch_stack(w, beta.clone())),
        Err(Errno::EAGAIN)
    );
    assert_eq!(h.conns.get_by_id(c).unwrap().stack().unwrap().name, "alpha");
    h.conns.get_by_id_mut(c).unwrap().ctx.tp.t_state = plugtcp_abi::TcpState::Established;

    // The new stack's init panics: switch_failed on the old one, its timers back, it keeps
    // the connection, and the fault is counted against the new stack.
    let failed_before = SWITCH_FAILED.load(Ordering::Relaxed);
    let conn = h.conns.get_by_id_mut(c).unwrap();
    let err = conn.switch_stack(&mut h.worker, pan.clone()).unwrap_err();
    assert_eq!(err.error, plugtcp_abi::HookError::Panicked);
    assert_eq!(SWITCH_FAILED.load(Ordering::Relaxed), failed_before + 1);
    assert_eq!(h.conns.get_by_id(c).unwrap().stack().unwrap().name, "alpha");
    assert_eq!(armed(&h), Some(REXMT_NS), "old stack's timer restored");
    assert_eq!((alpha.users(), pan.users()), (1, 0));

    // A good switch: old fini runs, counts move.
    let finis = FINIS.load(Ordering::Relaxed);
    h.with_conn(c, |c, w| c.switch_stack(w, beta.clone()))
        .unwrap();
    assert!(FINIS.load(Ordering::Relaxed) > finis);
    assert_eq!((alpha.users(), beta.users()), (0, 1));
    assert!(
        h.conns
            .get_by_id(c)
            .unwrap()
            .side
            .timers
            .iter()
            .all(Option::is_none),
        "old stack's timers stopped"
    );
    // Freeing the connection releases its stack and CC.
    h.abort(c);
    assert_eq!(beta.users(), 0);
}

#[test]
fn cc_registration_defaults_and_params() {
    let mut h = host();
    let r = &h.registry;
    let snap = r.snapshot();
    let nr = snap.cc("newreno").unwrap();
    // tcp(4)'s default.
    assert_eq!(snap.default_cc.as_ref().unwrap().name, "newreno");
    // The same module again: EEXIST (FreeBSD cc_register_algo).
    assert_eq!(
        r.register_cc(plugtcp_cc_newreno::cc_algo(), info()).err(),
        Some(Errno::EEXIST)
    );
    // A module without ack_received: EINVAL.
    let a = plugtcp_testplugin_panic_cc::cc_algo();
    let broken = CcAlgo {
        name: RStr::from_str("broken"),
        params: a.params(),
        counters: a.counters(),
        mod_init: a.mod_init(),
        mod_destroy: a.mod_destroy(),
        cb_init: a.cb_init(),
        cb_destroy: a.cb_destroy(),
        conn_init: a.conn_init(),
        ack_received: None,
        cong_signal: a.cong_signal(),
        post_recovery: a.post_recovery(),
        after_idle: a.after_idle(),
        ecnpkt_handler: a.ecnpkt_handler(),
        newround: a.newround(),
        rttsample: a.rttsample(),
        ctl_output: a.ctl_output(),
        param_check: a.param_check(),
        features: 0,
        cong_control: None,
    };
    let wm: &'static WithMetadata<CcAlgo> = Box::leak(Box::new(WithMetadata::new(broken)));
    assert_eq!(
        r.register_cc(plugtcp_abi::cc::CcAlgoRef(wm.static_as_prefix()), info())
            .err(),
        Some(Errno::EINVAL)
    );
    // cc.algorithm: ESRCH for an unknown module.
    assert_eq!(
        h.sysctl.set("net.inet.tcp.cc.algorithm", "nosuch").err(),
        Some(Errno::ESRCH)
    );
    // Module parameters as sysctls, with range checks and newreno's EACCES rule.
    assert_eq!(
        h.sysctl
            .get("net.inet.tcp.cc.newreno.beta")
            .unwrap()
            .to_string(),
        "50"
    );
    assert_eq!(
        h.sysctl_set("net.inet.tcp.cc.newreno.beta", "0").err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        h.sysctl_set("net.inet.tcp.cc.newreno.beta", "101").err(),
        Some(Errno::EINVAL)
    );
    h.sysctl_set("net.inet.tcp.cc.newreno.beta", "70").unwrap();
    assert_eq!(nr.params[0].load(Ordering::Relaxed), 70);
    assert_eq!(
        h.sysctl_set("net.inet.tcp.cc.newreno.beta_ecn", "60").err(),
        Some(Errno::EACCES)
    );
    h.sysctl_set("net.inet.tcp.cc.abe", "1").unwrap();
    h.sysctl_set("net.inet.tcp.cc.newreno.beta_ecn", "60")
        .unwrap();
    assert_eq!(
        h.sysctl
            .get("net.inet.tcp.cc.newreno.beta_ecn")
            .unwrap()
            .to_string(),
        "60"
    );
}

#[test]
fn cc_deregistration_and_forced_move() {
    let mut h = host();
    h.registry.register_block(block::<0>(), info()).unwrap();
    h.registry.set_default_block("alpha").unwrap();
    h.sysctl_set("net.inet.tcp.cc.algorithm", "newreno")
        .unwrap();
    h.kldload(
        common::target_dir()
            .join("libplugtcp_testplugin_panic_cc.so")
            .to_str()
            .unwrap(),
    )
    .unwrap();
    let snap = h.registry.load_full();
    let (nr, pk) = (
        snap.cc("newreno").unwrap().clone(),
        snap.cc("panicky").unwrap().clone(),
    );
    let c = h.new_conn().unwrap();
    assert_eq!(nr.users(), 1);
    h.with_conn(c, |c, _| c.set_cc(pk.clone())).unwrap();
    assert_eq!((nr.users(), pk.users()), (0, 1));
    let rows: Vec<Vec<String>> = common::cc_available_rows(&h)
        .into_iter()
        .filter(|r| ["CCmod", "newreno", "cubic", "panicky"].contains(&r[0].as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            vec!["CCmod", "D", "PCB", "count"],
            vec!["cubic", "0"],
            vec!["newreno", "*", "0"],
            vec!["panicky", "1"]
        ],
        "{rows:?}"
    );

    assert_eq!(h.kldunload("newreno", false), Err(Errno::EBUSY), "default");
    assert_eq!(h.kldunload("panicky", false), Err(Errno::EBUSY), "in use");
    assert_eq!(
        h.sysctl.set("net.inet.tcp.cc.algorithm", "panicky").err(),
        Some(Errno::ESRCH),
        "departing"
    );
    h.kldunload("panicky", true).unwrap();
    assert_eq!((nr.users(), pk.users()), (1, 0));
    assert_eq!(h.conns.get_by_id(c).unwrap().cc().unwrap().name, "newreno");
    assert!(h.registry.snapshot().cc_any("panicky").is_none());
}

#[test]
fn snapshots_are_immutable_views() {
    let h = empty_host();
    let before = h.registry.load_full();
    h.registry.register_block(block::<0>(), info()).unwrap();
    assert!(
        before.blocks.is_empty(),
        "an old snapshot does not change under its reader"
    );
    assert_eq!(h.registry.snapshot().blocks.len(), 1);
    assert!(!Arc::ptr_eq(&before, &h.registry.load_full()));
}

#[test]
fn functions_available_format() {
    let h = empty_host();
    h.registry.register_block(block::<0>(), info()).unwrap();
    h.registry.register_block(block::<1>(), info()).unwrap();
    let text = h
        .sysctl
        .get("net.inet.tcp.functions_available")
        .unwrap()
        .to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Stack", "D", "Alias", "PCB", "count"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["alpha", "*", "alpha", "0"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["alpha", "*", "a", "0"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["beta", "beta", "0"]
    );
    assert_eq!(
        h.sysctl.set("net.inet.tcp.functions_available", "x").err(),
        Some(Errno::EPERM)
    );
    let _ = Deregistered::Done;
}

#[test]
fn timers_fire_through_the_wheel_and_payload_reaches_the_receive_buffer() {
    let mut h = host();
    h.registry.register_block(block::<0>(), info()).unwrap();
    h.registry.set_default_block("alpha").unwrap();
    let c = h.new_conn().unwrap();
    let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for part in data.chunks(1460) {
        h.with_conn(c, |c, w| c.do_segment(w, &seg(part))).unwrap();
    }
    assert_eq!(h.readable(c), data.len());
    let mut got = vec![0u8; data.len()];
    assert_eq!(h.recv_peek(c, &mut got), Ok(data.len()));
    assert_eq!(
        got, data,
        "bytes intact through the host's chunked receive buffer"
    );
    assert!(
        h.buffer_chunks_in_use() >= 3,
        "40 kB spans three 16 KiB chunks"
    );

    // Nothing fires early; at the deadline the stack's timer runs (it signals CC_RTO, and
    // newreno collapses cwnd to one segment).
    let cwnd = h.tcpcb(c).unwrap().snd_cwnd;
    assert!(cwnd > 1460);
    h.advance(REXMT_NS - 1);
    assert_eq!(h.tcpcb(c).unwrap().snd_cwnd, cwnd);
    h.advance(REXMT_NS);
    let tp = h.tcpcb(c).unwrap();
    assert_eq!(tp.snd_cwnd, tp.t_maxseg);
    assert_eq!(h.timer_deadline(c, 0), None);

    // Closing returns every chunk and cancels every timer.
    h.abort(c);
    assert_eq!(h.buffer_chunks_in_use(), 0);
    assert_eq!(h.timers_armed(), 0);
}
