//! A plugin that panics costs one connection, never the host.

mod common;

use common::*;
use plugtcp_abi::{Errno, HookError, HookStatus};

#[test]
fn panicking_cc_hook_from_so_resets_one_connection() {
    quiet_panics();
    let mut h = host();
    h.registry.register_block(block::<0>(), info()).unwrap();
    h.registry.set_default_block("alpha").unwrap();
    let so = target_dir().join("libplugtcp_testplugin_panic_cc.so");
    h.kldload(so.to_str().unwrap()).unwrap();
    let panicky = h.registry.snapshot().cc("panicky").unwrap().clone();
    assert!(
        matches!(panicky.info.origin, plugtcp_host::registry::Origin::File(_)),
        "loaded from the .so"
    );

    let victim = h.new_conn().unwrap();
    let bystander = h.new_conn().unwrap();
    h.with_conn(victim, |c, _| c.set_cc(panicky.clone()))
        .unwrap();

    // The first acks work; the one where the module panics returns an error instead of
    // unwinding into the host, and the connection is reset.
    for _ in 0..plugtcp_testplugin_panic_cc::PANIC_AFTER {
        h.with_conn(victim, |c, w| c.do_segment(w, &seg(b"data")))
            .unwrap();
    }
    assert_eq!(
        h.with_conn(victim, |c, w| c.do_segment(w, &seg(b"data"))),
        Err(Errno::ECONNABORTED)
    );
    assert!(!h.conns.is_live(victim), "the faulting connection is gone");
    assert_eq!(h.plugin_faults.get("panicky"), Some(&1));
    assert_eq!(panicky.users(), 0, "its PCB count was released");

    // The host and the other connection carry on.
    let before = h.tcpcb(bystander).unwrap().snd_cwnd;
    h.with_conn(bystander, |c, w| c.do_segment(w, &seg(&[0u8; 1000])))
        .unwrap();
    assert!(h.tcpcb(bystander).unwrap().snd_cwnd >= before);
    assert!(h.kldstat().iter().any(|r| r.name == "panicky"));
    let again = h.new_conn().unwrap();
    h.with_conn(again, |c, _| c.set_cc(panicky.clone()))
        .unwrap();
    // cong_signal always panics: a timer on that connection resets it too.
    assert_eq!(
        h.with_conn(again, |c, w| c.timer(w, 0)),
        Err(Errno::ECONNABORTED)
    );
    assert_eq!(h.plugin_faults.get("panicky"), Some(&2));
}

#[test]
fn hook_called_directly_returns_panicked_status() {
    quiet_panics();
    let algo = plugtcp_testplugin_panic_cc::cc_algo();
    let g: &'static plugtcp_abi::cc::CcGlobals = Box::leak(Box::default());
    let mut ccv = plugtcp_abi::cc::CcVar::new(g);
    let mut tp = plugtcp_abi::Tcpcb::new(1460);
    assert_eq!((algo.cb_init().unwrap())(&mut ccv, &mut tp), HookStatus::OK);
    let st = (algo.cong_signal().unwrap())(&mut ccv, &mut tp, plugtcp_abi::cc::CC_NDUPACK);
    assert_eq!(st.into_result(), Err(HookError::Panicked));
    assert_eq!((algo.cb_destroy().unwrap())(&mut ccv), HookStatus::OK);
}

#[test]
fn several_plugins_link_statically_into_one_binary() {
    // This test binary links newreno and the panic fixture as rlibs; both export the same
    // fixed-name root-module symbol in their cdylibs. That it links at all is the check;
    // the descriptors must also be distinct.
    assert_eq!(plugtcp_cc_newreno::cc_algo().name().as_str(), "newreno");
    assert_eq!(
        plugtcp_testplugin_panic_cc::cc_algo().name().as_str(),
        "panicky"
    );
}
