//! `plugtcp bench dispatch`: nanoseconds per CC hook call (`ack_received`) through the
//! module loaded from its `.so`, through the same module linked statically and registered
//! through the same ABI descriptor, and as a plain Rust call with no ABI at all.

use std::hint::black_box;
use std::time::Instant;

use plugtcp_abi::cc::{ccf, CcAlgorithm, CcConn, CcGlobals, CcHooks, CcVar, CC_ACK};
use plugtcp_abi::Tcpcb;
use plugtcp_cc_newreno::NewReno;

use plugtcp_host::registry::loader::{open_plugin, SearchPath};

#[derive(Debug, serde::Serialize)]
pub struct DispatchReport {
    pub hook: &'static str,
    pub calls_per_sample: u64,
    pub samples: usize,
    pub file: String,
    /// Through the hooks copied from the `.so`'s descriptor.
    pub dynamic_ns: f64,
    /// Through the hooks copied from the statically linked descriptor.
    pub static_ns: f64,
    /// `NewReno::ack_received` called directly (no ABI, inlinable).
    pub direct_ns: f64,
    /// dynamic_ns - static_ns: what the shared-library boundary costs per call.
    pub dynamic_extra_ns: f64,
    pub target_extra_ns: f64,
}

fn fresh_tcpcb() -> Tcpcb {
    let mut tp = Tcpcb::new(1460);
    tp.snd_cwnd = 14600;
    tp.snd_ssthresh = u32::MAX;
    tp.snd_scale = 14;
    tp
}

fn conn_on(hooks: CcHooks, globals: &'static CcGlobals) -> (CcConn, Tcpcb) {
    let mut cc = CcConn::new(globals);
    cc.hooks = hooks;
    cc.ccv.bytes_this_ack = 1460;
    cc.ccv.flags = ccf::CWND_LIMITED;
    let mut tp = fresh_tcpcb();
    if let Some(init) = hooks.cb_init {
        // newreno's cb_init cannot fail; a failure here means a broken build.
        assert!(init(&mut cc.ccv, &mut tp).is_ok(), "newreno cb_init failed");
    }
    (cc, tp)
}

fn time_hooks(cc: &mut CcConn, tp: &mut Tcpcb, calls: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..calls {
        cc.ack_received(black_box(&mut *tp), black_box(CC_ACK));
    }
    t.elapsed().as_nanos() as f64 / calls as f64
}

fn time_direct(st: &mut NewReno, ccv: &mut CcVar, tp: &mut Tcpcb, calls: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..calls {
        st.ack_received(ccv, black_box(&mut *tp), black_box(CC_ACK));
    }
    t.elapsed().as_nanos() as f64 / calls as f64
}

/// Runs the benchmark. The `.so` is found as `newreno` on the search path.
pub fn run(search_path: &SearchPath, calls: u64, samples: usize) -> Result<DispatchReport, String> {
    let path = search_path.resolve("newreno");
    let root = open_plugin(&path).map_err(|e| e.to_string())?;
    let dyn_algo = root
        .cc_algo()
        .ok_or_else(|| format!("{}: not a CC module", path.display()))?();
    let static_algo = plugtcp_cc_newreno::cc_algo();
    let globals: &'static CcGlobals = Box::leak(Box::default());
    globals
        .abc_l_var
        .store(2, std::sync::atomic::Ordering::Relaxed);

    let (mut dyn_cc, mut dyn_tp) = conn_on(CcHooks::of(dyn_algo), globals);
    let (mut st_cc, mut st_tp) = conn_on(CcHooks::of(static_algo), globals);
    let mut direct_ccv = CcVar::new(globals);
    direct_ccv.bytes_this_ack = 1460;
    direct_ccv.flags = ccf::CWND_LIMITED;
    let mut direct_tp = fresh_tcpcb();
    let mut direct = NewReno::cb_init(&direct_ccv, &direct_tp).map_err(|e| e.to_string())?;

    let (mut d, mut s, mut x) = (Vec::new(), Vec::new(), Vec::new());
    // Interleave the variants so that machine noise hits all three alike.
    for _ in 0..samples {
        d.push(time_hooks(&mut dyn_cc, &mut dyn_tp, calls));
        s.push(time_hooks(&mut st_cc, &mut st_tp, calls));
        x.push(time_direct(
            &mut direct,
            &mut direct_ccv,
            &mut direct_tp,
            calls,
        ));
    }
    // Same arithmetic through all three paths: they must agree, or the comparison is void.
    if dyn_tp.snd_cwnd != st_tp.snd_cwnd || st_tp.snd_cwnd != direct_tp.snd_cwnd {
        return Err("dispatch paths disagree on cwnd".into());
    }
    let (dynamic_ns, static_ns, direct_ns) = (super::median(d), super::median(s), super::median(x));
    Ok(DispatchReport {
        hook: "ack_received",
        calls_per_sample: calls,
        samples,
        file: path.display().to_string(),
        dynamic_ns,
        static_ns,
        direct_ns,
        dynamic_extra_ns: dynamic_ns - static_ns,
        target_extra_ns: 5.0,
    })
}
