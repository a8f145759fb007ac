//! CHD, CAIA-Hamilton Delay congestion control, as FreeBSD's cc_chd(4): D. A. Hayes and
//! G. Armitage, "Improved coexistence and loss tolerance for delay based TCP congestion
//! control", 35th IEEE Conference on Local Computer Networks (LCN 2010), Denver.
//!
//! Once per RTT the queueing delay `qdly = rtt - minrtt` (with `use_max`, the largest RTT of
//! that RTT; otherwise the latest sample) decides a probabilistic backoff with the Hamilton
//! (HD) probability: 0 up to `queue_min`, rising linearly to `pmax` at `queue_threshold`,
//! then falling linearly to 0 at the largest queueing delay seen. A backoff keeps about half
//! the window and enters congestion recovery.
//!
//! Loss tolerance: a loss while the queueing delay is below `queue_threshold` is taken as
//! not caused by congestion, so the window stays. Coexistence: a shadow window follows what
//! NewReno's window would be without the delay backoffs; when the delay keeps growing past
//! our backoffs (`loss_compete`, with `loss_fair` on), a congestion loss restores the window
//! from the shadow window before halving it, so loss-based flows do not starve us.
//!
//! The RTT samples come through h_ertt's delayed-ACK guard (the framework's [`ErttHelper`]).
//! FreeBSD measures delays in ticks (1 ms at the default hz=1000); the sysctls here are in
//! milliseconds and the delays are compared in microseconds, the unit of the RTT samples.

use std::sync::atomic::AtomicIsize;

use abi_stable::std_types::RStr;
use plugtcp_abi::cc::{
    param_value, CcAlgorithm, CcGlobals, CcParamDesc, CcVar, CC_ACK, CC_NDUPACK,
};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::common;
use plugtcp_tcpkit::cc::delay::{
    connection_seed, grow_with_shadow, hamilton_backoff_probability, ms_to_us,
};
use plugtcp_tcpkit::cc::ertt::ErttHelper;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// CHD's private delay-based congestion signal (FreeBSD CC_CHD_DELAY).
pub const CC_CHD_DELAY: u32 = 0x0200_0000;

/// Parameter indices in [`Chd::PARAMS`] (FreeBSD's sysctl order).
pub const PARAM_LOSS_FAIR: usize = 0;
pub const PARAM_PMAX: usize = 1;
pub const PARAM_QUEUE_THRESHOLD: usize = 2;
pub const PARAM_QUEUE_MIN: usize = 3;
pub const PARAM_USE_MAX: usize = 4;

/// FreeBSD's defaults (cc_chd.c).
pub const DEFAULT_LOSS_FAIR: i64 = 1;
pub const DEFAULT_PMAX: i64 = 50;
pub const DEFAULT_QUEUE_THRESHOLD: i64 = 20;
pub const DEFAULT_QUEUE_MIN: i64 = 5;
pub const DEFAULT_USE_MAX: i64 = 1;

/// Counter indices in [`Chd::COUNTERS`].
pub const COUNTER_DELAY_BACKOFFS: usize = 0;
pub const COUNTER_LOSSES_IGNORED: usize = 1;

/// The per-connection PRNG of the probabilistic backoff, from [`connection_seed`]
/// (FreeBSD uses the kernel's random()).
pub fn connection_rng(tp: &Tcpcb) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(connection_seed(tp))
}

/// chd_window_decrease: ssthresh = the window less half of it (at least one segment),
/// counted in whole segments, at least two.
fn window_decrease(tp: &mut Tcpcb) {
    let mss = tp.maxseg().max(1);
    let win = tp.snd_wnd.min(tp.snd_cwnd) / mss;
    let win = win.saturating_sub((win / 2).max(1));
    tp.snd_ssthresh = win.max(2).saturating_mul(mss);
}

/// Per-connection state (FreeBSD `struct chd`) with the h_ertt measurements and the PRNG.
#[derive(Debug, Clone)]
pub struct Chd {
    pub hertt: ErttHelper,
    /// What NewReno's cwnd would be without the delay-based backoffs (0: not tracking).
    pub shadow_w: u32,
    /// Set when the delay stays above queue_threshold across backoffs: a loss-based flow
    /// probably shares the queue.
    pub loss_compete: bool,
    /// The largest RTT sample of the current measurement period (us).
    pub maxrtt_in_rtt: u32,
    /// The queueing delay of the last delay-based backoff (us).
    pub prev_backoff_qdly: u64,
    pub rng: Xoshiro256PlusPlus,
}

impl Chd {
    /// should_backoff (the Hamilton probability of cc_hd, per RTT here): one draw decides both
    /// the backoff and, above queue_threshold, whether we are competing with loss-based flows.
    fn should_backoff(&mut self, ccv: &CcVar, qdly: u64, maxqdly: u64) -> bool {
        let qmin = ms_to_us(ccv.param(PARAM_QUEUE_MIN, DEFAULT_QUEUE_MIN));
        let qthresh = ms_to_us(ccv.param(PARAM_QUEUE_THRESHOLD, DEFAULT_QUEUE_THRESHOLD));
        let pmax = ccv.param(PARAM_PMAX, DEFAULT_PMAX) as f64 / 100.0;
        let p = hamilton_backoff_probability(qdly, maxqdly, qmin, qthresh, pmax);
        let backoff = self.rng.random::<f64>() < p;
        if qdly > qthresh {
            if backoff && ccv.param(PARAM_LOSS_FAIR, DEFAULT_LOSS_FAIR) != 0 {
                self.loss_compete = true;
            }
        } else {
            self.loss_compete = false;
        }
        backoff
    }

    /// chd_window_increase: NewReno's slow start with ABC and one segment per window in
    /// congestion avoidance, mirrored in the shadow window.
    fn window_increase(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        let mss = tp.maxseg();
        let incr = if tp.snd_cwnd <= tp.snd_ssthresh {
            // RFC 3465: at most L segments per ACK, one while retransmitting after an RTO.
            let l = CcGlobals::get(&ccv.globals.abc_l_var).max(1) as u32;
            let limit = if tp.snd_nxt == tp.snd_max {
                l.saturating_mul(mss)
            } else {
                mss
            };
            ccv.bytes_this_ack.min(limit)
        } else {
            common::congestion_avoidance_increase(ccv, tp)
        };
        grow_with_shadow(tp, &mut self.shadow_w, incr, incr);
    }
}

impl CcAlgorithm for Chd {
    const NAME: &'static str = "chd";
    const PARAMS: &'static [CcParamDesc] = &[
        CcParamDesc::new(
            "loss_fair",
            "Flag to enable shadow window functionality.",
            DEFAULT_LOSS_FAIR,
            0,
            1,
        ),
        CcParamDesc::new(
            "pmax",
            "Per RTT maximum backoff probability as a percentage",
            DEFAULT_PMAX,
            1,
            100,
        ),
        CcParamDesc::new(
            "queue_threshold",
            "Queueing congestion threshold in ms",
            DEFAULT_QUEUE_THRESHOLD,
            0,
            u32::MAX as i64,
        ),
        CcParamDesc::new(
            "queue_min",
            "Minimum queueing delay threshold in ms",
            DEFAULT_QUEUE_MIN,
            0,
            u32::MAX as i64,
        ),
        CcParamDesc::new(
            "use_max",
            "Use the maximum RTT seen within the measurement period (RTT) as the basic delay \
             measurement for the algorithm.",
            DEFAULT_USE_MAX,
            0,
            u32::MAX as i64,
        ),
    ];
    const COUNTERS: &'static [RStr<'static>] = &[
        RStr::from_str("delay_backoffs"),
        RStr::from_str("losses_ignored"),
    ];

    fn cb_init(_ccv: &CcVar, tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(Chd {
            hertt: ErttHelper::default(),
            shadow_w: 0,
            loss_compete: false,
            maxrtt_in_rtt: 0,
            prev_backoff_qdly: 0,
            rng: connection_rng(tp),
        })
    }

    /// The shadow window starts at cwnd in case loss-based flows compete from the start.
    fn conn_init(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb) {
        self.prev_backoff_qdly = 0;
        self.maxrtt_in_rtt = 0;
        self.loss_compete = false;
        self.shadow_w = tp.snd_cwnd;
        self.rng = connection_rng(tp);
    }

    /// chd_ack_received: every ACK type carries timing; once per RTT (a new h_ertt
    /// measurement) the delay test runs; only plain ACKs grow the window.
    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        if let Some(rtt) = self
            .hertt
            .ack_received(ack_type, ccv.bytes_this_ack, tp.maxseg())
        {
            // Every sample counts towards the measurement period's largest RTT.
            self.maxrtt_in_rtt = self.maxrtt_in_rtt.max(rtt);
        }
        let mut backoff = false;
        let mut qdly = 0;
        if self.hertt.ertt.take_new_measurement() {
            let rtt = if ccv.param(PARAM_USE_MAX, DEFAULT_USE_MAX) != 0 {
                self.maxrtt_in_rtt
            } else {
                self.hertt.ertt.rtt
            };
            self.maxrtt_in_rtt = 0;
            let minrtt = self.hertt.ertt.minrtt;
            if rtt != 0 && minrtt != 0 && !tp.in_recovery() {
                qdly = u64::from(rtt.saturating_sub(minrtt));
                if qdly > ms_to_us(ccv.param(PARAM_QUEUE_MIN, DEFAULT_QUEUE_MIN)) {
                    let maxqdly = u64::from(self.hertt.ertt.maxrtt.saturating_sub(minrtt));
                    backoff = self.should_backoff(ccv, qdly, maxqdly);
                } else {
                    self.loss_compete = false;
                }
            }
        }
        if backoff {
            if self.loss_compete || qdly > self.prev_backoff_qdly {
                // The delay grew past our last backoff: maybe loss-based flows fill the
                // queue, so keep the window NewReno would have.
                self.shadow_w = self.shadow_w.max(tp.snd_cwnd);
            } else {
                // Our backoffs work: nobody to compete with.
                self.shadow_w = 0;
            }
            self.prev_backoff_qdly = qdly;
            self.cong_signal(ccv, tp, CC_CHD_DELAY);
        } else if ack_type == CC_ACK {
            self.window_increase(ccv, tp);
        }
    }

    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        match sig {
            CC_CHD_DELAY => {
                ccv.count(COUNTER_DELAY_BACKOFFS, 1);
                window_decrease(tp);
                tp.snd_cwnd = tp.snd_ssthresh;
                tp.snd_recover = tp.snd_max;
                tp.t_flags |= tf::CONGRECOVERY;
            }
            CC_NDUPACK => {
                let e = &self.hertt.ertt;
                let qdly = e.rtt.max(self.maxrtt_in_rtt).saturating_sub(e.minrtt);
                let qthresh = ms_to_us(ccv.param(PARAM_QUEUE_THRESHOLD, DEFAULT_QUEUE_THRESHOLD));
                if !tp.in_recovery() && u64::from(qdly) > qthresh {
                    // A congestion loss, probably with loss-based flows around: undo the
                    // delay backoffs they made pointless, then halve.
                    if self.loss_compete {
                        tp.snd_cwnd = tp.snd_cwnd.max(self.shadow_w);
                    }
                    window_decrease(tp);
                } else {
                    // Short queue (a loss not caused by congestion) or already reducing.
                    ccv.count(COUNTER_LOSSES_IGNORED, 1);
                    tp.snd_ssthresh = tp.snd_cwnd;
                    tp.snd_recover = tp.snd_max;
                }
                if self.shadow_w > 0 {
                    let mss = tp.maxseg().max(1);
                    self.shadow_w = (self.shadow_w / mss / 2).max(2).saturating_mul(mss);
                }
                tp.t_flags |= tf::FASTRECOVERY;
            }
            _ => common::newreno_cc_cong_signal(ccv, tp, sig),
        }
    }

    plugtcp_tcpkit::newreno_hooks!(post_recovery, after_idle);
    plugtcp_tcpkit::ertt_hooks!(hertt: newround, rttsample);

    /// FreeBSD's sysctl handlers: loss_fair 0 or 1 and pmax in 1..=100 (the declared
    /// ranges), queue_threshold above the current queue_min; queue_min itself is unchecked.
    fn param_check(
        idx: u32,
        value: i64,
        _globals: &CcGlobals,
        current: &[AtomicIsize],
    ) -> Result<(), Errno> {
        match idx as usize {
            PARAM_QUEUE_THRESHOLD
                if value <= param_value(current, PARAM_QUEUE_MIN, DEFAULT_QUEUE_MIN) =>
            {
                Err(Errno::EINVAL)
            }
            PARAM_LOSS_FAIR if !(0..=1).contains(&value) => Err(Errno::EINVAL),
            PARAM_PMAX if !(1..=100).contains(&value) => Err(Errno::EINVAL),
            _ => Ok(()),
        }
    }
}

plugtcp_abi::export_cc_module!(Chd);

#[cfg(test)]
mod tests;
