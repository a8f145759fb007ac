//! HD, the Hamilton Institute's delay-based congestion control, as FreeBSD's cc_hd(4):
//! L. Budzisz, R. Stanojevic, R. Shorten and F. Baker, "A strategy for fair coexistence of
//! loss and delay-based congestion control algorithms", IEEE Communications Letters 13(7),
//! pp. 555-557, July 2009.
//!
//! On every ACK the queueing delay `qdly = rtt - minrtt` (h_ertt's latest sample and
//! smallest sample, through its delayed-ACK guard: the framework's [`ErttHelper`]) decides a
//! probabilistic backoff ([`hamilton_backoff_probability`]): nothing at or below
//! `queue_min`, then a probability rising linearly to `pmax` at `queue_threshold` and falling
//! linearly back to 0 at the largest queueing delay seen (`maxrtt - minrtt`). A backoff is
//! NewReno's response to an ECN mark (cwnd and ssthresh halved, congestion recovery for one
//! window); everything else (slow start, congestion avoidance, loss, RTO, idle restart) is
//! NewReno.
//!
//! FreeBSD measures delays in ticks (1 ms at the default hz=1000); the sysctls here are in
//! milliseconds and the delays are compared in microseconds, the unit of the RTT samples.

use std::sync::atomic::AtomicIsize;

use abi_stable::std_types::RStr;
use plugtcp_abi::cc::{param_value, CcAlgorithm, CcGlobals, CcParamDesc, CcVar, CC_ACK, CC_ECN};
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::common;
use plugtcp_tcpkit::cc::delay::{connection_seed, hamilton_backoff_probability, ms_to_us};
use plugtcp_tcpkit::cc::ertt::ErttHelper;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Parameter indices in [`Hd::PARAMS`] (FreeBSD's sysctl order).
pub const PARAM_QUEUE_THRESHOLD: usize = 0;
pub const PARAM_PMAX: usize = 1;
pub const PARAM_QUEUE_MIN: usize = 2;

/// FreeBSD's defaults (cc_hd.c): qth = 20 ticks, pmax = 5 %, qmin = 5 ticks.
pub const DEFAULT_QUEUE_THRESHOLD: i64 = 20;
pub const DEFAULT_PMAX: i64 = 5;
pub const DEFAULT_QUEUE_MIN: i64 = 5;

/// Counter indices in [`Hd::COUNTERS`].
pub const COUNTER_DELAY_BACKOFFS: usize = 0;

/// The per-connection PRNG of the probabilistic backoff, from [`connection_seed`]
/// (FreeBSD uses the kernel's random()).
pub fn connection_rng(tp: &Tcpcb) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(connection_seed(tp))
}

/// Per-connection state: the h_ertt measurements and the backoff PRNG.
#[derive(Debug, Clone)]
pub struct Hd {
    pub hertt: ErttHelper,
    pub rng: Xoshiro256PlusPlus,
}

impl Hd {
    /// The probabilistic delay test of hd_ack_received: true when this ACK backs off.
    fn delay_backoff(&mut self, ccv: &CcVar, tp: &Tcpcb) -> bool {
        let qthresh = ccv.param(PARAM_QUEUE_THRESHOLD, DEFAULT_QUEUE_THRESHOLD);
        let e = &self.hertt.ertt;
        if e.rtt == 0 || e.minrtt == 0 || qthresh <= 0 || tp.in_recovery() {
            return false;
        }
        let qmin = ms_to_us(ccv.param(PARAM_QUEUE_MIN, DEFAULT_QUEUE_MIN));
        let qdly = u64::from(e.rtt.saturating_sub(e.minrtt));
        if qdly <= qmin {
            return false;
        }
        let maxqdly = u64::from(e.maxrtt.saturating_sub(e.minrtt));
        let pmax = ccv.param(PARAM_PMAX, DEFAULT_PMAX) as f64 / 100.0;
        let p = hamilton_backoff_probability(qdly, maxqdly, qmin, ms_to_us(qthresh), pmax);
        self.rng.random::<f64>() < p
    }
}

impl CcAlgorithm for Hd {
    const NAME: &'static str = "hd";
    const PARAMS: &'static [CcParamDesc] = &[
        CcParamDesc::new(
            "queue_threshold",
            "queueing congestion threshold (qth) in ms",
            DEFAULT_QUEUE_THRESHOLD,
            1,
            u32::MAX as i64,
        ),
        CcParamDesc::new(
            "pmax",
            "per packet maximum backoff probability as a percentage",
            DEFAULT_PMAX,
            1,
            100,
        ),
        CcParamDesc::new(
            "queue_min",
            "minimum queueing delay threshold (qmin) in ms",
            DEFAULT_QUEUE_MIN,
            0,
            u32::MAX as i64,
        ),
    ];
    const COUNTERS: &'static [RStr<'static>] = &[RStr::from_str("delay_backoffs")];

    fn cb_init(_ccv: &CcVar, tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(Hd {
            hertt: ErttHelper::default(),
            rng: connection_rng(tp),
        })
    }

    fn conn_init(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb) {
        self.rng = connection_rng(tp);
    }

    /// hd_ack_received: on a plain ACK outside recovery, a probabilistic backoff treated
    /// as NewReno treats an ECN mark; otherwise NewReno's increase.
    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        self.hertt
            .ack_received(ack_type, ccv.bytes_this_ack, tp.maxseg());
        if ack_type == CC_ACK && self.delay_backoff(ccv, tp) {
            ccv.count(COUNTER_DELAY_BACKOFFS, 1);
            // As the stack does for an ECN signal: the reduction holds for the window in
            // flight (CONGRECOVERY ends once snd_max is acknowledged).
            tp.snd_recover = tp.snd_max;
            common::newreno_cc_cong_signal(ccv, tp, CC_ECN);
            return;
        }
        common::newreno_cc_ack_received(ccv, tp, ack_type);
    }

    plugtcp_tcpkit::newreno_hooks!(cong_signal, post_recovery, after_idle);
    plugtcp_tcpkit::ertt_hooks!(hertt: newround, rttsample);

    /// FreeBSD's sysctl handlers: pmax in 1..=100 (the declared range), queue_threshold
    /// non-zero and not below the current queue_min, queue_min not above the current
    /// queue_threshold.
    fn param_check(
        idx: u32,
        value: i64,
        _globals: &CcGlobals,
        current: &[AtomicIsize],
    ) -> Result<(), Errno> {
        let queue_min = || param_value(current, PARAM_QUEUE_MIN, DEFAULT_QUEUE_MIN);
        let queue_threshold =
            || param_value(current, PARAM_QUEUE_THRESHOLD, DEFAULT_QUEUE_THRESHOLD);
        match idx as usize {
            PARAM_QUEUE_THRESHOLD if value == 0 || value < queue_min() => Err(Errno::EINVAL),
            PARAM_QUEUE_MIN if value > queue_threshold() => Err(Errno::EINVAL),
            PARAM_PMAX if !(1..=100).contains(&value) => Err(Errno::EINVAL),
            _ => Ok(()),
        }
    }
}

plugtcp_abi::export_cc_module!(Hd);

#[cfg(test)]
mod tests;
