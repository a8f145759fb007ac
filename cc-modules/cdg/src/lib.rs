//! CDG, CAIA Delay-Gradient congestion control, as FreeBSD's cc_cdg(4) (version 0.1):
//! D. A. Hayes and G. Armitage, "Revisiting TCP congestion control using delay gradients",
//! IFIP Networking 2011, Valencia (Proceedings, Part II, pp. 328-341).
//!
//! Once per RTT (a new h_ertt measurement) CDG takes the smallest and the largest RTT of
//! that RTT, their differences from the previous RTT's (the delay gradients g_min and g_max)
//! and their moving averages over `smoothing_factor` RTTs. A positive gradient means a
//! growing queue, and CDG backs off with probability `P = 1 - exp(-g / G)`
//! (`G = exp_backoff_scale`, paper eq. (3)) to `beta_delay` % of the window. The two
//! gradients also classify the queue (rising, falling, full, empty; paper section 3.3):
//!
//! - loss tolerance: a loss while the queue is not inferred full is taken as not caused by
//!   congestion and the window stays;
//! - coexistence with loss-based flows: when `loss_compete_consec_cong` delay backoffs in a
//!   row did not make the queue fall, CDG stops backing off on delay for
//!   `loss_compete_hold_backoff` congestion episodes; a shadow window follows NewReno's
//!   window and a congestion loss keeps at least half of it.
//!
//! The window grows by one segment per ACK in slow start and by one segment per RTT in
//! congestion avoidance (or more with `alpha_inc`); a congestion loss keeps `beta_loss` %.
//! RTO, ECN, recovery exit and idle restart are NewReno's.
//!
//! The RTT samples come through h_ertt's delayed-ACK guard (the framework's [`ErttHelper`]).
//! FreeBSD measures RTTs in ticks (1 ms at hz=1000) and keeps gradients in 1/128 tick; here
//! the gradients are in microseconds, the unit of the RTT samples, and `exp_backoff_scale`
//! is in milliseconds (FreeBSD's ticks at hz=1000).

use std::collections::VecDeque;
use std::sync::atomic::AtomicIsize;

use abi_stable::std_types::RStr;
use plugtcp_abi::cc::{CcAlgorithm, CcGlobals, CcParamDesc, CcVar, CC_ACK, CC_NDUPACK};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::common;
use plugtcp_tcpkit::cc::delay::{connection_seed, grow_with_shadow};
use plugtcp_tcpkit::cc::ertt::ErttHelper;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// CDG's private delay-gradient congestion signal (FreeBSD CC_CDG_DELAY).
pub const CC_CDG_DELAY: u32 = 0x0100_0000;

/// The shadow window's backoff on a congestion loss, NewReno's (percent).
pub const RENO_BETA: u64 = 50;

/// The largest gradient, in units of `exp_backoff_scale`, FreeBSD's probexp table covers:
/// above it a backoff is certain.
pub const MAXGRAD: f64 = 5.0;

/// FreeBSD's `probexp[0]`: 10/2^15 rather than 0, so that a gradient too small to register
/// in the table still backs off now and then.
pub const PROBEXP_MIN: f64 = 10.0 / 32768.0;

/// Parameter indices in [`Cdg::PARAMS`] (FreeBSD's sysctl order).
pub const PARAM_VERSION: usize = 0;
pub const PARAM_ALPHA_INC: usize = 1;
pub const PARAM_BETA_DELAY: usize = 2;
pub const PARAM_BETA_LOSS: usize = 3;
pub const PARAM_EXP_BACKOFF_SCALE: usize = 4;
pub const PARAM_SMOOTHING_FACTOR: usize = 5;
pub const PARAM_LOSS_COMPETE_CONSEC_CONG: usize = 6;
pub const PARAM_LOSS_COMPETE_HOLD_BACKOFF: usize = 7;

/// The version sysctl: FreeBSD's read-only string "0.1", as an integer in tenths.
pub const VERSION_TENTHS: i64 = 1;

/// FreeBSD's defaults (cdg_init_vnet in cc_cdg.c; cc_cdg.4 says 2 for exp_backoff_scale but
/// the code sets 3).
pub const DEFAULT_ALPHA_INC: i64 = 0;
pub const DEFAULT_BETA_DELAY: i64 = 70;
pub const DEFAULT_BETA_LOSS: i64 = 50;
pub const DEFAULT_EXP_BACKOFF_SCALE: i64 = 3;
pub const DEFAULT_SMOOTHING_FACTOR: i64 = 8;
pub const DEFAULT_LOSS_COMPETE_CONSEC_CONG: i64 = 5;
pub const DEFAULT_LOSS_COMPETE_HOLD_BACKOFF: i64 = 5;

/// Counter indices in [`Cdg::COUNTERS`].
pub const COUNTER_DELAY_BACKOFFS: usize = 0;
pub const COUNTER_BACKOFFS_HELD: usize = 1;
pub const COUNTER_LOSSES_IGNORED: usize = 2;

const UINT_MAX: i64 = u32::MAX as i64;

/// The backoff probability for a (smoothed) delay gradient `g` in microseconds per RTT
/// with `exp_backoff_scale` G in milliseconds: `1 - exp(-g / G)` (paper eq. (3)); 0 for a
/// gradient that is not positive, certain above [`MAXGRAD`] G, and at least
/// [`PROBEXP_MIN`] otherwise, as FreeBSD's table gives it.
pub fn backoff_probability(g: i64, exp_backoff_scale: i64) -> f64 {
    if g <= 0 {
        return 0.0;
    }
    let x = g as f64 / (exp_backoff_scale.max(1) as f64 * 1000.0);
    if x > MAXGRAD {
        1.0
    } else {
        (1.0 - (-x).exp()).max(PROBEXP_MIN)
    }
}

/// The per-connection PRNG of the probabilistic backoff, from [`connection_seed`]
/// (FreeBSD uses the kernel's prng32()).
pub fn connection_rng(tp: &Tcpcb) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(connection_seed(tp))
}

/// The moving average of the last `size` gradients (the paper's smoothed g over `a`
/// samples), kept as cc_cdg's calc_moving_average keeps it: each new sample adds
/// `sample / size`, and once `size` samples are held the oldest one's share leaves, so the
/// average ramps up over the first `size` RTTs. `size` 0 means no smoothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MovingAverage {
    samples: VecDeque<i64>,
    size: usize,
    /// The smoothed gradient (FreeBSD min_qtrend / max_qtrend).
    pub trend: i64,
}

impl MovingAverage {
    pub fn new(size: usize) -> Self {
        MovingAverage {
            samples: VecDeque::new(),
            size,
            trend: 0,
        }
    }

    pub fn push(&mut self, sample: i64) {
        if self.size == 0 {
            self.trend = sample;
            return;
        }
        let n = self.size as i64;
        if self.samples.len() >= self.size {
            let oldest = self.samples.pop_front().unwrap_or(0);
            self.trend += (sample - oldest) / n;
        } else {
            self.trend += sample / n;
        }
        self.samples.push_back(sample);
    }
}

/// The inferred state of the bottleneck queue (FreeBSD's CDG_Q_*; the order matters: a loss
/// counts as congestion only from `Full` on, `Unknown` included).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueueState {
    Empty = 1,
    Rising = 2,
    Falling = 3,
    Full = 4,
    Unknown = 9999,
}

/// No RTT sample yet in this RTT (FreeBSD: INT_MAX).
const NO_MIN_RTT: u32 = u32::MAX;

/// Per-connection state (FreeBSD `struct cdg`) with the h_ertt measurements and the PRNG.
#[derive(Debug, Clone)]
pub struct Cdg {
    pub hertt: ErttHelper,
    /// g_max and g_min, smoothed.
    pub max_qtrend: MovingAverage,
    pub min_qtrend: MovingAverage,
    /// Segments added per RTT in congestion avoidance when alpha_inc is set.
    pub window_incr: u32,
    /// RTTs since window_incr last grew.
    pub rtt_count: u32,
    /// Largest and smallest RTT of this RTT and of the previous one (us).
    pub maxrtt_in_rtt: u32,
    pub maxrtt_in_prevrtt: u32,
    pub minrtt_in_rtt: u32,
    pub minrtt_in_prevrtt: u32,
    /// Delay-gradient congestion episodes in a row without the queue falling.
    pub consec_cong_cnt: u32,
    /// What NewReno's cwnd would be (0: not tracking).
    pub shadow_w: u32,
    pub queue_state: QueueState,
    pub rng: Xoshiro256PlusPlus,
}

impl Cdg {
    /// cdg_window_decrease: `beta` percent of the window the receiver allows. Never below a
    /// segment, so a zero receive window does not leave cwnd at 0.
    fn window_decrease(tp: &Tcpcb, owin: u32, beta: u64) -> u32 {
        let win = u64::from(tp.snd_wnd.min(owin)) * beta / 100;
        (win as u32).max(tp.maxseg())
    }

    /// The once-per-RTT gradient update of cdg_ack_received; true for a delay-gradient
    /// congestion indication.
    fn update_gradients(&mut self, ccv: &CcVar, tp: &Tcpcb) -> bool {
        let mut congestion = false;
        if self.maxrtt_in_prevrtt != 0 {
            let slowstart = tp.snd_cwnd <= tp.snd_ssthresh;
            let qdiff_max = i64::from(self.maxrtt_in_rtt) - i64::from(self.maxrtt_in_prevrtt);
            let qdiff_min = i64::from(self.minrtt_in_rtt) - i64::from(self.minrtt_in_prevrtt);
            self.max_qtrend.push(qdiff_max);
            self.min_qtrend.push(qdiff_min);
            let (gmax, gmin) = (self.max_qtrend.trend, self.min_qtrend.trend);

            // The minimum RTT's gradient first (the queue, without the noise of the
            // maximum); unsmoothed in slow start, where the window doubles each RTT.
            let g = if slowstart && qdiff_min > 0 {
                qdiff_min
            } else if gmin > 0 {
                gmin
            } else if slowstart && qdiff_max > 0 {
                qdiff_max
            } else {
                gmax
            };
            if g > 0 {
                let scale = ccv.param(PARAM_EXP_BACKOFF_SCALE, DEFAULT_EXP_BACKOFF_SCALE);
                congestion = self.rng.random::<f64>() < backoff_probability(g, scale);
            }

            if gmin > 0 && gmax <= 0 {
                self.queue_state = QueueState::Full;
            } else if gmin >= 0 && gmax < 0 {
                self.queue_state = QueueState::Empty;
                self.shadow_w = 0;
            } else if gmin > 0 && gmax > 0 {
                self.queue_state = QueueState::Rising;
            } else if gmin < 0 && gmax < 0 {
                self.queue_state = QueueState::Falling;
            }
            // Our backoffs are working: the queue shrinks.
            if gmin < 0 || gmax < 0 {
                self.consec_cong_cnt = 0;
            }
        }
        self.minrtt_in_prevrtt = self.minrtt_in_rtt;
        self.minrtt_in_rtt = NO_MIN_RTT;
        self.maxrtt_in_prevrtt = self.maxrtt_in_rtt;
        self.maxrtt_in_rtt = 0;
        congestion
    }

    /// cdg_window_increase: one segment per ACK in slow start; one per RTT in congestion
    /// avoidance, or `window_incr` segments growing by one every `alpha_inc` RTTs. The
    /// shadow window grows as NewReno's would.
    fn window_increase(&mut self, ccv: &CcVar, tp: &mut Tcpcb, new_measurement: bool) {
        let mss = tp.maxseg();
        let (incr, s_w_incr) = if tp.snd_cwnd <= tp.snd_ssthresh {
            self.window_incr = 0;
            self.rtt_count = 0;
            (mss, mss)
        } else if new_measurement {
            let alpha_inc = ccv.param(PARAM_ALPHA_INC, DEFAULT_ALPHA_INC);
            if alpha_inc == 0 {
                (mss, mss)
            } else {
                self.rtt_count = self.rtt_count.saturating_add(1);
                if i64::from(self.rtt_count) >= alpha_inc {
                    self.window_incr = self.window_incr.saturating_add(1);
                    self.rtt_count = 0;
                }
                (mss.saturating_mul(self.window_incr), mss)
            }
        } else {
            (0, 0)
        };
        grow_with_shadow(tp, &mut self.shadow_w, incr, s_w_incr);
    }
}

impl CcAlgorithm for Cdg {
    const NAME: &'static str = "cdg";
    const PARAMS: &'static [CcParamDesc] = &[
        CcParamDesc::new(
            "version",
            "Current algorithm/implementation version number, in tenths (1: \"0.1\"); read-only",
            VERSION_TENTHS,
            i64::MIN,
            i64::MAX,
        ),
        CcParamDesc::new(
            "alpha_inc",
            "Increment the window increase factor alpha by 1 MSS segment every alpha_inc RTTs \
             during congestion avoidance mode.",
            DEFAULT_ALPHA_INC,
            0,
            UINT_MAX,
        ),
        CcParamDesc::new(
            "beta_delay",
            "Delay-based window decrease factor as a percentage (on delay-based backoff, \
             w = w * beta_delay / 100)",
            DEFAULT_BETA_DELAY,
            1,
            100,
        ),
        CcParamDesc::new(
            "beta_loss",
            "Loss-based window decrease factor as a percentage (on loss-based backoff, \
             w = w * beta_loss / 100)",
            DEFAULT_BETA_LOSS,
            1,
            100,
        ),
        CcParamDesc::new(
            "exp_backoff_scale",
            "Scaling parameter for the probabilistic exponential backoff, in ms",
            DEFAULT_EXP_BACKOFF_SCALE,
            1,
            UINT_MAX,
        ),
        CcParamDesc::new(
            "smoothing_factor",
            "Number of samples used for moving average smoothing (0 = no smoothing)",
            DEFAULT_SMOOTHING_FACTOR,
            0,
            UINT_MAX,
        ),
        CcParamDesc::new(
            "loss_compete_consec_cong",
            "Number of consecutive delay-gradient based congestion episodes which will trigger \
             loss based CC compatibility",
            DEFAULT_LOSS_COMPETE_CONSEC_CONG,
            0,
            UINT_MAX,
        ),
        CcParamDesc::new(
            "loss_compete_hold_backoff",
            "Number of consecutive delay-gradient based congestion episodes to hold the window \
             backoff for loss based CC compatibility",
            DEFAULT_LOSS_COMPETE_HOLD_BACKOFF,
            0,
            UINT_MAX,
        ),
    ];
    const COUNTERS: &'static [RStr<'static>] = &[
        RStr::from_str("delay_backoffs"),
        RStr::from_str("backoffs_held"),
        RStr::from_str("losses_ignored"),
    ];

    fn cb_init(ccv: &CcVar, tp: &Tcpcb) -> Result<Self, Errno> {
        // As FreeBSD: the smoothing window is fixed for the connection's lifetime.
        let size = ccv
            .param(PARAM_SMOOTHING_FACTOR, DEFAULT_SMOOTHING_FACTOR)
            .clamp(0, UINT_MAX) as usize;
        Ok(Cdg {
            hertt: ErttHelper::default(),
            max_qtrend: MovingAverage::new(size),
            min_qtrend: MovingAverage::new(size),
            window_incr: 0,
            rtt_count: 0,
            maxrtt_in_rtt: 0,
            maxrtt_in_prevrtt: 0,
            minrtt_in_rtt: NO_MIN_RTT,
            minrtt_in_prevrtt: 0,
            consec_cong_cnt: 0,
            shadow_w: 0,
            queue_state: QueueState::Unknown,
            rng: connection_rng(tp),
        })
    }

    /// The shadow window starts at cwnd in case loss-based flows compete from the start.
    fn conn_init(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb) {
        self.shadow_w = tp.snd_cwnd;
        self.rng = connection_rng(tp);
    }

    /// cdg_ack_received: the gradients once per RTT, then either a delay-gradient backoff
    /// (or holding it back while competing with loss-based flows) or the window increase.
    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        if let Some(rtt) = self
            .hertt
            .ack_received(ack_type, ccv.bytes_this_ack, tp.maxseg())
        {
            // Every sample counts towards this RTT's smallest and largest RTT.
            self.maxrtt_in_rtt = self.maxrtt_in_rtt.max(rtt);
            self.minrtt_in_rtt = self.minrtt_in_rtt.min(rtt);
        }
        let new_measurement = self.hertt.ertt.take_new_measurement();
        // A round without an RTT sample of ours has nothing to compare.
        let congestion =
            new_measurement && self.minrtt_in_rtt != NO_MIN_RTT && self.update_gradients(ccv, tp);

        if congestion {
            self.consec_cong_cnt = self.consec_cong_cnt.saturating_add(1);
            if !tp.in_recovery() {
                let consec_cong = ccv.param(
                    PARAM_LOSS_COMPETE_CONSEC_CONG,
                    DEFAULT_LOSS_COMPETE_CONSEC_CONG,
                );
                let hold = ccv.param(
                    PARAM_LOSS_COMPETE_HOLD_BACKOFF,
                    DEFAULT_LOSS_COMPETE_HOLD_BACKOFF,
                );
                let episodes = i64::from(self.consec_cong_cnt);
                if episodes <= consec_cong {
                    self.cong_signal(ccv, tp, CC_CDG_DELAY);
                } else {
                    // Backing off has not made the queue fall: loss-based flows probably
                    // fill it. Hold the backoffs for `hold` episodes, then try again.
                    ccv.count(COUNTER_BACKOFFS_HELD, 1);
                    if episodes >= consec_cong.saturating_add(hold) {
                        self.consec_cong_cnt = 0;
                    }
                }
                // The backoff shows in the RTT after next; skip the next gradient.
                self.maxrtt_in_prevrtt = 0;
                self.shadow_w = self.shadow_w.max(tp.snd_cwnd);
            }
        } else if ack_type == CC_ACK {
            self.window_increase(ccv, tp, new_measurement);
        }
    }

    fn cong_signal(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        match sig {
            CC_CDG_DELAY => {
                ccv.count(COUNTER_DELAY_BACKOFFS, 1);
                let beta = ccv.param(PARAM_BETA_DELAY, DEFAULT_BETA_DELAY) as u64;
                tp.snd_ssthresh = Self::window_decrease(tp, tp.snd_cwnd, beta);
                tp.snd_cwnd = tp.snd_ssthresh;
                tp.snd_recover = tp.snd_max;
                self.window_incr = 0;
                self.rtt_count = 0;
                tp.t_flags |= tf::CONGRECOVERY;
            }
            CC_NDUPACK => {
                if tp.in_congrecovery() || self.queue_state < QueueState::Full {
                    // Already reducing, or no queue is full: a loss not caused by
                    // congestion, so the window stays.
                    ccv.count(COUNTER_LOSSES_IGNORED, 1);
                    tp.snd_ssthresh = tp.snd_cwnd;
                    tp.snd_recover = tp.snd_max;
                } else {
                    // A full queue: a congestion loss. The shadow window reacts as NewReno
                    // would, and we keep at least that.
                    if self.shadow_w > 0 {
                        self.shadow_w = Self::window_decrease(tp, self.shadow_w, RENO_BETA);
                    }
                    let beta = ccv.param(PARAM_BETA_LOSS, DEFAULT_BETA_LOSS) as u64;
                    tp.snd_ssthresh =
                        self.shadow_w
                            .max(Self::window_decrease(tp, tp.snd_cwnd, beta));
                    self.window_incr = 0;
                    self.rtt_count = 0;
                }
                tp.t_flags |= tf::INRECOVERY;
            }
            _ => common::newreno_cc_cong_signal(ccv, tp, sig),
        }
    }

    plugtcp_tcpkit::newreno_hooks!(post_recovery, after_idle);
    plugtcp_tcpkit::ertt_hooks!(hertt: newround, rttsample);

    /// FreeBSD's sysctl handlers: version is read-only (EPERM), beta_delay and beta_loss in
    /// 1..=100, exp_backoff_scale at least 1 (the last three are the declared ranges).
    fn param_check(
        idx: u32,
        value: i64,
        _globals: &CcGlobals,
        _current: &[AtomicIsize],
    ) -> Result<(), Errno> {
        match idx as usize {
            PARAM_VERSION => Err(Errno::EPERM),
            PARAM_BETA_DELAY | PARAM_BETA_LOSS if !(1..=100).contains(&value) => Err(Errno::EINVAL),
            PARAM_EXP_BACKOFF_SCALE if value < 1 => Err(Errno::EINVAL),
            _ => Ok(()),
        }
    }
}

plugtcp_abi::export_cc_module!(Cdg);

#[cfg(test)]
mod tests;
