//! A harness for the unit tests of CC modules, in-tree and out-of-tree: a connection on a
//! module driven through its ABI descriptor (the [`CcAlgoRef`] its `cc_algo()` returns), with
//! the host-wide tunables, sysctl values and counters a host would keep for it.
//!
//! Test code only: what a host owns for as long as it runs (the globals, the parameter values
//! and the counters, which a [`CcVar`](plugtcp_abi::cc::CcVar) borrows for `'static`) is leaked here.
//!
//! ```
//! use plugtcp_tcpkit::cc::testing::{self, TestConn};
//! use plugtcp_abi::cc::{ccf, CcAlgorithm, CcVar, CC_ACK, CC_NDUPACK};
//! use plugtcp_abi::{Errno, Tcpcb};
//!
//! /// The module under test: here cc.c's NewReno.
//! struct Reno;
//!
//! impl CcAlgorithm for Reno {
//!     const NAME: &'static str = "reno";
//!     fn cb_init(_ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
//!         Ok(Reno)
//!     }
//!     plugtcp_tcpkit::newreno_hooks!(ack_received, cong_signal, after_idle);
//! }
//!
//! let mut tp = testing::tcpcb(1000, 10_000, u32::MAX);
//! let params = testing::params::<Reno>(&[]);
//! let mut cc = TestConn::<Reno>::attach(testing::globals(), params, &mut tp);
//! cc.ccv.flags |= ccf::CWND_LIMITED;
//! cc.ccv.bytes_this_ack = 1000;
//! cc.ack_received(&mut tp, CC_ACK);
//! assert_eq!(tp.snd_cwnd, 11_000);
//! cc.cong_signal(&mut tp, CC_NDUPACK);
//! assert_eq!(tp.snd_ssthresh, 5000);
//! testing::assert_newreno_after_idle(&mut cc, &mut tp);
//! cc.assert_cb_destroy_frees_state();
//! ```

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use plugtcp_abi::cc::{
    ccf, CcAlgoRef, CcAlgorithm, CcConn, CcGlobals, CcHooks, CcVtable, CC_ACK, CC_DUPACK, CC_ECN,
};
use plugtcp_abi::errno::{Errno, HookStatus};
use plugtcp_abi::tcpcb::Tcpcb;

/// Host-wide tunables for a test, leaked: `net.inet.tcp.abc_l_var` 2 and
/// `net.inet.tcp.initcwnd_segments` 10 (FreeBSD's defaults), everything else 0 (no ABE, the
/// HyStart++ tunables unset). Every call makes a new set, which the test may change.
pub fn globals() -> &'static CcGlobals {
    let g: &'static CcGlobals = Box::leak(Box::default());
    g.abc_l_var.store(2, Ordering::Relaxed);
    g.initcwnd_segments.store(10, Ordering::Relaxed);
    g
}

/// A control block for a test: segments of `mss` bytes, `cwnd` and `ssthresh` as given, and
/// a send window of 1 MiB (window scale 7).
pub fn tcpcb(mss: u32, cwnd: u32, ssthresh: u32) -> Tcpcb {
    let mut tp = Tcpcb::new(mss);
    tp.snd_cwnd = cwnd;
    tp.snd_ssthresh = ssthresh;
    tp.snd_wnd = 1 << 20;
    tp.snd_scale = 7;
    tp
}

/// `T`'s parameter values at their defaults (`T::PARAMS`), in a fresh vector: what a host
/// keeps for the module's sysctls, e.g. for [`sysctl`] or as `param_check`'s `current`.
pub fn param_defaults<T: CcAlgorithm>() -> Vec<AtomicIsize> {
    T::PARAMS
        .iter()
        .map(|d| AtomicIsize::new(d.default as isize))
        .collect()
}

/// `T`'s parameter values for a connection (its [`CcVar::params`](plugtcp_abi::cc::CcVar::params)), leaked: the defaults,
/// then `overrides`, each `(index in T::PARAMS, value)`.
pub fn params<T: CcAlgorithm>(overrides: &[(usize, i64)]) -> &'static [AtomicIsize] {
    let values: &'static [AtomicIsize] = Box::leak(param_defaults::<T>().into_boxed_slice());
    for &(idx, value) in overrides {
        values[idx].store(value as isize, Ordering::Relaxed);
    }
    values
}

/// `T`'s counters (`T::COUNTERS`), all 0, leaked.
pub fn counters<T: CcAlgorithm>() -> &'static [AtomicUsize] {
    Box::leak(
        T::COUNTERS
            .iter()
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// `T`'s ABI descriptor: the one its `export_cc_module!`'s `cc_algo()` returns.
pub fn algo<T: CcAlgorithm>() -> CcAlgoRef {
    CcVtable::<T>::ALGO
}

/// `T`'s parameters as its descriptor declares them: (name, default, min, max).
pub fn param_table<T: CcAlgorithm>() -> Vec<(&'static str, i64, i64, i64)> {
    algo::<T>()
        .params()
        .iter()
        .map(|d| (d.name.as_str(), d.default, d.min, d.max))
        .collect()
}

/// What a host does for `sysctl net.inet.tcp.cc.<module>.<param>=value` on `T`'s
/// parameter `idx`: the declared range check (EINVAL), the module's `param_check` against
/// the values as they are now (`values`, in the order of `T::PARAMS`), then the store.
pub fn sysctl<T: CcAlgorithm>(
    globals: &CcGlobals,
    values: &[AtomicIsize],
    idx: usize,
    value: i64,
) -> HookStatus {
    let algo = algo::<T>();
    let params = algo.params();
    let d = &params[idx];
    if !(d.min..=d.max).contains(&value) {
        return HookStatus(Errno::EINVAL.0);
    }
    let check = algo.param_check().expect("every module has param_check");
    let st = check(idx as u32, value, globals, values.into());
    if st.is_ok() {
        values[idx].store(value as isize, Ordering::Relaxed);
    }
    st
}

/// A connection on module `T`, as a host drives it: a [`CcConn`] (which it derefs to) with
/// the hooks of `T`'s descriptor, and `T`'s per-connection state within reach.
///
/// [`Self::state`] trusts what every hook trusts: that `cc_data` is the state `T`'s
/// `cb_init` made (or null). A test that puts another module's state or hooks into the
/// connection breaks that.
pub struct TestConn<T> {
    conn: CcConn,
    algo: PhantomData<fn() -> T>,
}

impl<T: CcAlgorithm> TestConn<T> {
    /// A connection on `T` with `globals`, the parameter values `params` (see [`params`])
    /// and fresh counters, after `T`'s cb_init on `tp` (which must succeed). conn_init is
    /// left to the test: a host calls it once the handshake has set the initial window.
    pub fn attach(
        globals: &'static CcGlobals,
        params: &'static [AtomicIsize],
        tp: &mut Tcpcb,
    ) -> Self {
        let mut conn = CcConn::new(globals);
        conn.hooks = CcHooks::of(algo::<T>());
        conn.ccv.params = params.into();
        conn.ccv.counters = counters::<T>().into();
        let cb_init = conn.hooks.cb_init.expect("every module has cb_init");
        assert!(cb_init(&mut conn.ccv, tp).is_ok(), "cb_init failed");
        TestConn {
            conn,
            algo: PhantomData,
        }
    }

    /// The module's per-connection state. Panics when there is none (before cb_init, after
    /// cb_destroy).
    pub fn state(&self) -> &T {
        let p = self.conn.ccv.cc_data as *const T;
        assert!(
            !p.is_null(),
            "no {} state (before cb_init or after cb_destroy)",
            T::NAME
        );
        // SAFETY: cc_data is the Box<T> made by T's cb_init (see the type's contract); it
        // lives until cb_destroy, which needs `&mut self`.
        unsafe { &*p }
    }

    /// The module's per-connection state, to change. Panics as [`Self::state`].
    pub fn state_mut(&mut self) -> &mut T {
        let p = self.conn.ccv.cc_data as *mut T;
        assert!(
            !p.is_null(),
            "no {} state (before cb_init or after cb_destroy)",
            T::NAME
        );
        // SAFETY: as in `state`; `&mut self` makes this the only reference.
        unsafe { &mut *p }
    }

    /// Stores `value` in parameter `idx` (the connection's sysctl value; no checks).
    pub fn set_param(&self, idx: usize, value: i64) {
        self.conn.ccv.params[idx].store(value as isize, Ordering::Relaxed);
    }

    /// Counter `idx` of the module.
    pub fn counter(&self, idx: usize) -> usize {
        self.conn.ccv.counters[idx].load(Ordering::Relaxed)
    }

    /// Checks that cb_destroy frees the state: `cc_data` set before, null after.
    pub fn assert_cb_destroy_frees_state(&mut self) {
        assert!(!self.conn.ccv.cc_data.is_null());
        let cb_destroy = self
            .conn
            .hooks
            .cb_destroy
            .expect("every module has cb_destroy");
        assert!(cb_destroy(&mut self.conn.ccv).is_ok());
        assert!(self.conn.ccv.cc_data.is_null());
    }
}

impl<T> Deref for TestConn<T> {
    type Target = CcConn;
    fn deref(&self) -> &CcConn {
        &self.conn
    }
}

impl<T> DerefMut for TestConn<T> {
    fn deref_mut(&mut self) -> &mut CcConn {
        &mut self.conn
    }
}

impl<T> Drop for TestConn<T> {
    /// Frees the module's state, as a host does when the connection goes.
    fn drop(&mut self) {
        if let Some(cb_destroy) = self.conn.hooks.cb_destroy {
            if !self.conn.ccv.cc_data.is_null() {
                cb_destroy(&mut self.conn.ccv);
            }
        }
    }
}

/// An ACK of `bytes` with an RTT sample of `rtt` us, as a stack calls the hooks for it:
/// `rttsample`, then `newround` when it ends the round, then `ack_received(CC_ACK)`. For
/// modules that measure with h_ertt (the framework's `ErttHelper`).
pub fn sampled_ack(cc: &mut CcConn, tp: &mut Tcpcb, rtt: u32, bytes: u32, ends_round: bool) {
    cc.rttsample(tp, rtt, 0, 0);
    if ends_round {
        cc.newround(tp, 0);
    }
    cc.ccv.bytes_this_ack = bytes;
    cc.ack_received(tp, CC_ACK);
}

/// An ACK of one segment (`t_maxseg`) with an RTT sample, within the round.
pub fn sample(cc: &mut CcConn, tp: &mut Tcpcb, rtt: u32) {
    sampled_ack(cc, tp, rtt, tp.t_maxseg, false);
}

/// One round trip: an ACK of one segment per RTT sample in `samples`, the last one ending
/// the round.
pub fn round(cc: &mut CcConn, tp: &mut Tcpcb, samples: &[u32]) {
    for (i, &rtt) in samples.iter().enumerate() {
        sampled_ack(cc, tp, rtt, tp.t_maxseg, i + 1 == samples.len());
    }
}

/// Checks that a duplicate ACK, outside recovery and cwnd-limited, leaves cwnd alone.
pub fn assert_dupack_keeps_cwnd(cc: &mut CcConn, tp: &mut Tcpcb) {
    let cwnd = tp.snd_cwnd;
    cc.ccv.flags |= ccf::CWND_LIMITED;
    cc.ack_received(tp, CC_DUPACK);
    assert_eq!(tp.snd_cwnd, cwnd, "a duplicate ACK grew cwnd");
}

/// Checks that an ECN signal outside recovery is NewReno's: from a cwnd of 20 segments,
/// cwnd and ssthresh 10, in congestion recovery and not in fast recovery.
pub fn assert_newreno_ecn(cc: &mut CcConn, tp: &mut Tcpcb) {
    let mss = tp.t_maxseg;
    tp.snd_cwnd = 20 * mss;
    cc.cong_signal(tp, CC_ECN);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (10 * mss, 10 * mss));
    assert!(tp.in_congrecovery() && !tp.in_fastrecovery());
}

/// Checks that after_idle is NewReno's (RFC 5681 4.1's restart window, ssthresh at least
/// 3/4 of the old cwnd): from cwnd 100 and ssthresh 20 segments to cwnd 10 (the initial
/// window of [`globals`]) and ssthresh 75.
pub fn assert_newreno_after_idle(cc: &mut CcConn, tp: &mut Tcpcb) {
    let mss = tp.t_maxseg;
    tp.snd_cwnd = 100 * mss;
    tp.snd_ssthresh = 20 * mss;
    cc.after_idle(tp);
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (10 * mss, 75 * mss));
}

/// Checks that `hits` in `trials` independent trials are what a probability `p` gives, to
/// within five standard deviations.
pub fn assert_rate(hits: usize, trials: usize, p: f64) {
    let mean = trials as f64 * p;
    let sd = (trials as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (hits as f64 - mean).abs() <= 5.0 * sd,
        "{hits} in {trials} trials, expected {mean:.1} +- {:.1} (p = {p})",
        5.0 * sd
    );
}

/// Checks that conn_init seeds a module's PRNG again, from the sequence numbers the handshake
/// chose (a module's cb_init may come before them, on an active open). `conn` was attached
/// with `iss` and `irs` 0; `rng` reads the module's PRNG from its state and `seeded` makes the
/// one a connection with a control block's sequence numbers should have.
pub fn assert_conn_init_reseeds<T: CcAlgorithm, R: PartialEq + std::fmt::Debug>(
    conn: (TestConn<T>, Tcpcb),
    rng: impl Fn(&T) -> R,
    seeded: impl Fn(&Tcpcb) -> R,
) {
    let (mut cc, mut tp) = conn;
    let unseeded = seeded(&tp);
    tp.iss = 77;
    tp.irs = 88;
    cc.conn_init(&mut tp);
    assert_eq!(rng(cc.state()), seeded(&tp));
    assert_ne!(rng(cc.state()), unseeded);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cc::ertt::ErttHelper;
    use plugtcp_abi::abi_stable::std_types::RStr;
    use plugtcp_abi::cc::{param_value, CcParamDesc, CcVar, CC_NDUPACK};

    /// A module with two parameters (a <= b), a counter of its congestion signals and the
    /// bytes it saw acknowledged.
    struct Probe {
        acked: u32,
    }

    impl CcAlgorithm for Probe {
        const NAME: &'static str = "probe";
        const PARAMS: &'static [CcParamDesc] = &[
            CcParamDesc::new("a", "", 3, 0, 10),
            CcParamDesc::new("b", "", 5, 1, 10),
        ];
        const COUNTERS: &'static [RStr<'static>] = &[RStr::from_str("signals")];

        fn cb_init(_ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
            Ok(Probe { acked: 0 })
        }
        fn ack_received(&mut self, ccv: &mut CcVar, _tp: &mut Tcpcb, _ack_type: u32) {
            self.acked += ccv.bytes_this_ack;
        }
        fn cong_signal(&mut self, ccv: &mut CcVar, _tp: &mut Tcpcb, _sig: u32) {
            ccv.count(0, 1);
        }
        fn param_check(i: u32, v: i64, _: &CcGlobals, cur: &[AtomicIsize]) -> Result<(), Errno> {
            let too_big = i == 0 && v > param_value(cur, 1, 5);
            if too_big {
                Err(Errno::EINVAL)
            } else {
                Ok(())
            }
        }
    }

    /// NewReno from cc.c's functions, through the macro.
    struct Reno;

    impl CcAlgorithm for Reno {
        const NAME: &'static str = "reno";
        fn cb_init(_ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
            Ok(Reno)
        }
        crate::newreno_hooks!(ack_received, cong_signal, post_recovery, after_idle);
    }

    /// h_ertt's measurements, through the macro.
    struct Measured {
        hertt: ErttHelper,
    }

    impl CcAlgorithm for Measured {
        const NAME: &'static str = "measured";
        fn cb_init(_ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
            Ok(Measured {
                hertt: ErttHelper::default(),
            })
        }
        fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
            self.hertt
                .ack_received(ack_type, ccv.bytes_this_ack, tp.t_maxseg);
        }
        fn cong_signal(&mut self, _ccv: &mut CcVar, _tp: &mut Tcpcb, _sig: u32) {}
        crate::ertt_hooks!(hertt: rttsample, newround);
    }

    fn tcpcb() -> Tcpcb {
        super::tcpcb(1000, 10_000, u32::MAX)
    }

    #[test]
    fn attach_params_counters_and_state() {
        let g = globals();
        assert_eq!(CcGlobals::get(&g.abc_l_var), 2);
        assert_eq!(CcGlobals::get(&g.initcwnd_segments), 10);
        let mut tp = tcpcb();
        let mut cc = TestConn::<Probe>::attach(g, params::<Probe>(&[(1, 7)]), &mut tp);
        assert_eq!((cc.ccv.param(0, -1), cc.ccv.param(1, -1)), (3, 7));
        cc.set_param(0, 4);
        assert_eq!(cc.ccv.param(0, -1), 4);
        cc.cong_signal(&mut tp, CC_NDUPACK);
        assert_eq!(cc.counter(0), 1);
        sampled_ack(&mut cc, &mut tp, 0, 2000, false);
        assert_eq!(cc.state().acked, 2000);
        cc.state_mut().acked = 0;
        assert_eq!(cc.state().acked, 0);
        cc.assert_cb_destroy_frees_state();
    }

    #[test]
    fn sysctl_checks_range_then_module() {
        let g = globals();
        let values = param_defaults::<Probe>();
        let einval = HookStatus(Errno::EINVAL.0);
        assert_eq!(sysctl::<Probe>(g, &values, 1, 0), einval, "below the range");
        assert_eq!(sysctl::<Probe>(g, &values, 0, 6), einval, "a > b");
        assert!(sysctl::<Probe>(g, &values, 0, 5).is_ok());
        assert!(sysctl::<Probe>(g, &values, 1, 9).is_ok());
        let now: Vec<_> = values.iter().map(|v| v.load(Ordering::Relaxed)).collect();
        assert_eq!(now, [5, 9]);
        assert_eq!(param_table::<Probe>(), [("a", 3, 0, 10), ("b", 5, 1, 10)]);
    }

    #[test]
    #[should_panic(expected = "no probe state")]
    fn state_after_cb_destroy_panics() {
        let mut tp = tcpcb();
        let mut cc = TestConn::<Probe>::attach(globals(), params::<Probe>(&[]), &mut tp);
        cc.assert_cb_destroy_frees_state();
        let _ = cc.state();
    }

    #[test]
    fn newreno_hooks_are_newreno() {
        let mut tp = tcpcb();
        let mut cc = TestConn::<Reno>::attach(globals(), params::<Reno>(&[]), &mut tp);
        cc.ccv.flags |= ccf::CWND_LIMITED;
        cc.ccv.bytes_this_ack = 3000;
        cc.ack_received(&mut tp, CC_ACK);
        assert_eq!(tp.snd_cwnd, 12_000, "ABC: at most L = 2 segments");
        assert_dupack_keeps_cwnd(&mut cc, &mut tp);
        assert_newreno_ecn(&mut cc, &mut tp);
        tp.t_flags = 0;
        assert_newreno_after_idle(&mut cc, &mut tp);
        tp.snd_cwnd = 30_000;
        cc.cong_signal(&mut tp, CC_NDUPACK);
        assert_eq!(tp.snd_ssthresh, 15_000);
        tp.snd_max = 100_000;
        cc.ccv.curack = 97_000;
        cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
        cc.post_recovery(&mut tp);
        assert_eq!(tp.snd_cwnd, 4000, "pipe + 1 segment");
    }

    #[test]
    fn rounds_reach_the_ertt_helper() {
        let mut tp = tcpcb();
        let mut cc = TestConn::<Measured>::attach(globals(), params::<Measured>(&[]), &mut tp);
        round(&mut cc, &mut tp, &[40_000, 45_000]);
        let e = &cc.state_mut().hertt.ertt;
        assert_eq!(
            (e.markedpkt_rtt, e.minrtt, e.maxrtt),
            (45_000, 40_000, 45_000)
        );
        assert!(cc.state_mut().hertt.ertt.take_new_measurement());
        sample(&mut cc, &mut tp, 30_000);
        assert!(!cc.state().hertt.ertt.new_measurement, "within the round");
        assert_eq!(cc.state().hertt.ertt.rtt, 30_000);
        sampled_ack(&mut cc, &mut tp, 50_000, 2000, true);
        assert_eq!(cc.state().hertt.ertt.markedpkt_rtt, 50_000);
        // The round's bytes: the ACK that ended the first round and the one within this.
        assert_eq!(cc.state().hertt.ertt.bytes_tx_in_marked_rtt, 2000);
    }

    #[test]
    fn rate_within_five_standard_deviations() {
        assert_rate(500, 1000, 0.5);
        assert!(std::panic::catch_unwind(|| assert_rate(600, 1000, 0.5)).is_err());
    }
}
