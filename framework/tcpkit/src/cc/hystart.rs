//! HyStart++ (RFC 9406): leaving slow start when the RTT starts to grow, before the queue
//! overflows. FreeBSD builds it into newreno and cubic; here it is one state machine that
//! both modules embed. The stack permits it per connection with `ccf::HYSTART_ALLOWED`, and
//! the `net.inet.tcp.cc.hystartplusplus.*` sysctls (in [`CcGlobals`]) tune it.

use plugtcp_abi::cc::{ccf, CcGlobals, CcVar};
use plugtcp_abi::tcpcb::Tcpcb;

/// RFC 9406 section 4.2's MIN_RTT_DIVISOR.
pub const MIN_RTT_DIVISOR: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Standard slow start, watching the RTT.
    SlowStart,
    /// Conservative Slow Start: growth divided by css_growth_div, for css_rounds rounds.
    Css,
    /// Left slow start (by HyStart++, a loss or an RTO): no more decisions.
    Done,
}

/// Per-connection HyStart++ state (RFC 9406's variables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyStart {
    pub phase: Phase,
    pub current_round_min_rtt: u32,
    pub last_round_min_rtt: u32,
    pub rtt_sample_count: u32,
    pub css_baseline_min_rtt: u32,
    pub css_rounds: u32,
    /// Times CSS was entered and abandoned as a false alarm, and times it ended slow start.
    pub css_entered: u32,
    pub css_exited_early: u32,
}

impl Default for HyStart {
    fn default() -> Self {
        HyStart {
            phase: Phase::SlowStart,
            current_round_min_rtt: u32::MAX,
            last_round_min_rtt: u32::MAX,
            rtt_sample_count: 0,
            css_baseline_min_rtt: u32::MAX,
            css_rounds: 0,
            css_entered: 0,
            css_exited_early: 0,
        }
    }
}

fn g(v: &std::sync::atomic::AtomicIsize) -> u32 {
    CcGlobals::get(v).clamp(0, u32::MAX as i64) as u32
}

impl HyStart {
    fn active(&self, ccv: &CcVar, tp: &Tcpcb) -> bool {
        self.phase != Phase::Done
            && ccv.flags & ccf::HYSTART_ALLOWED != 0
            && tp.snd_cwnd <= tp.snd_ssthresh
    }

    /// One RTT sample (every ACK that gives one): RFC 9406 4.2's per-ACK steps.
    pub fn rttsample(&mut self, ccv: &CcVar, tp: &Tcpcb, usec_rtt: u32) {
        if !self.active(ccv, tp) || usec_rtt == 0 {
            return;
        }
        self.current_round_min_rtt = self.current_round_min_rtt.min(usec_rtt);
        self.rtt_sample_count += 1;
        let n = g(&ccv.globals.hystartplusplus_n_rttsamples).max(1);
        if self.rtt_sample_count < n || self.current_round_min_rtt == u32::MAX {
            return;
        }
        match self.phase {
            Phase::SlowStart if self.last_round_min_rtt != u32::MAX => {
                let lo = g(&ccv.globals.hystartplusplus_minrtt_thresh);
                let hi = g(&ccv.globals.hystartplusplus_maxrtt_thresh).max(lo);
                let thresh = (self.last_round_min_rtt / MIN_RTT_DIVISOR).clamp(lo, hi);
                if self.current_round_min_rtt >= self.last_round_min_rtt.saturating_add(thresh) {
                    self.phase = Phase::Css;
                    self.css_baseline_min_rtt = self.current_round_min_rtt;
                    self.css_rounds = 0;
                    self.css_entered += 1;
                }
            }
            Phase::Css if self.current_round_min_rtt < self.css_baseline_min_rtt => {
                // The delay increase was spurious: back to standard slow start.
                self.phase = Phase::SlowStart;
                self.css_baseline_min_rtt = u32::MAX;
                self.css_exited_early += 1;
            }
            _ => {}
        }
    }

    /// A new round began (the stack's `newround`): RFC 9406's round bookkeeping, and the end
    /// of slow start after css_rounds rounds of CSS (ssthresh = cwnd).
    pub fn newround(&mut self, ccv: &CcVar, tp: &mut Tcpcb) {
        if !self.active(ccv, tp) {
            return;
        }
        self.last_round_min_rtt = self.current_round_min_rtt;
        self.current_round_min_rtt = u32::MAX;
        self.rtt_sample_count = 0;
        if self.phase == Phase::Css {
            self.css_rounds += 1;
            if self.css_rounds >= g(&ccv.globals.hystartplusplus_css_rounds).max(1) {
                tp.snd_ssthresh = tp.snd_cwnd;
                self.phase = Phase::Done;
            }
        }
    }

    /// The slow-start increase as HyStart++ lets it through: divided in CSS.
    #[inline]
    pub fn ss_increase(&self, ccv: &CcVar, incr: u32) -> u32 {
        if self.phase == Phase::Css && ccv.flags & ccf::HYSTART_ALLOWED != 0 {
            incr / g(&ccv.globals.hystartplusplus_css_growth_div).max(1)
        } else {
            incr
        }
    }

    /// A congestion signal ends slow start for good (RFC 9406 4.2: loss or ECN in either
    /// phase means standard congestion avoidance from then on).
    pub fn on_congestion(&mut self) {
        self.phase = Phase::Done;
    }
}
