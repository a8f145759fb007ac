//! A template CC module: AIMD with tunable steps. Slow start as NewReno; in congestion
//! avoidance cwnd grows by `ai` segments per RTT; on loss or ECN it is cut to `md` percent.
//! Copy it, rename `NAME`, and change the arithmetic.
//!
//! Build: `cargo build --release`, then `plugtcp kldload target/release/libplugtcp_cc_aimd.so`
//! (see README.md for loading it into a running host and switching a live connection).

use plugtcp_abi::cc::{ccf, CcAlgorithm, CcParamDesc, CcVar, CC_ECN, CC_NDUPACK, CC_RTO};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, Tcpcb};
use plugtcp_tcpkit::cc::common::{self, max_cwnd, may_grow, scaled_window, slow_start_increase};

/// Parameter indices in [`Aimd::PARAMS`]; the host exposes them as
/// `net.inet.tcp.cc.aimd.ai` and `net.inet.tcp.cc.aimd.md`.
pub const PARAM_AI: usize = 0;
pub const PARAM_MD: usize = 1;
/// The parameters' defaults, in one place: the sysctls start at them, and a connection
/// whose host gives no value uses them.
pub const DEFAULT_AI: i64 = 1;
pub const DEFAULT_MD: i64 = 50;

/// Per-connection state. The host keeps cwnd and ssthresh in the Tcpcb; a module keeps only
/// what is its own. Values are read at cb_init, so a sysctl change applies to new
/// connections (and to connections switched to the module afterwards).
pub struct Aimd {
    ai: u32,
    md: u32,
}

impl CcAlgorithm for Aimd {
    const NAME: &'static str = "aimd";
    const PARAMS: &'static [CcParamDesc] = &[
        CcParamDesc::new(
            "ai",
            "segments added per RTT in congestion avoidance",
            DEFAULT_AI,
            1,
            64,
        ),
        CcParamDesc::new(
            "md",
            "percent of cwnd kept on congestion",
            DEFAULT_MD,
            10,
            95,
        ),
    ];

    fn cb_init(ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(Aimd {
            ai: ccv.param(PARAM_AI, DEFAULT_AI) as u32,
            md: ccv.param(PARAM_MD, DEFAULT_MD) as u32,
        })
    }

    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        if !may_grow(ccv, tp, ack_type) {
            return;
        }
        let incr = if tp.snd_cwnd <= tp.snd_ssthresh {
            slow_start_increase(ccv, tp)
        } else if ccv.flags & ccf::ABC_SENTAWND != 0 {
            // The stack sets ABC_SENTAWND once a whole cwnd was acknowledged: one RTT.
            ccv.flags &= !ccf::ABC_SENTAWND;
            self.ai * tp.maxseg()
        } else {
            0
        };
        tp.snd_cwnd = tp.snd_cwnd.saturating_add(incr).min(max_cwnd(tp));
    }

    fn cong_signal(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        let cut = scaled_window(tp.snd_cwnd, self.md as u64, tp.maxseg());
        match sig {
            // Once per recovery episode, as FreeBSD's modules do.
            CC_NDUPACK if !tp.in_fastrecovery() => {
                if !tp.in_congrecovery() {
                    tp.snd_ssthresh = cut;
                }
                tp.t_flags |= tf::FASTRECOVERY | tf::CONGRECOVERY;
            }
            CC_ECN if !tp.in_congrecovery() => {
                tp.snd_ssthresh = cut;
                tp.snd_cwnd = cut;
                tp.t_flags |= tf::CONGRECOVERY;
            }
            CC_RTO => common::rto_backoff(tp),
            _ => {}
        }
    }

    fn post_recovery(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        common::newreno_cc_post_recovery(ccv, tp);
    }

    fn after_idle(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb) {
        common::newreno_cc_after_idle(ccv, tp);
    }

    // A rate-based module (BBR, Copa, PCC) would also set `const WANTS_RATE_SAMPLE: bool =
    // true` and implement `cong_control(ccv, tp, rs, pacing)`: a delivery-rate sample on
    // every ACK, and cwnd, `pacing.pacing_rate` and `pacing.send_quantum` to set, which the
    // host's pacer honours. cc-modules/bbr is the worked example.
}

plugtcp_abi::export_cc_module!(Aimd);

#[cfg(test)]
mod tests {
    use super::*;
    use plugtcp_abi::cc::CC_ACK;
    use plugtcp_tcpkit::cc::testing::{self, TestConn};

    const MSS: u32 = 1000;

    /// A connection on this module, driven through its ABI descriptor as the host does, with
    /// `ai` and `md` as the sysctls would set them.
    fn conn(ai: i64, md: i64) -> (TestConn<Aimd>, Tcpcb) {
        let mut tp = testing::tcpcb(MSS, 20 * MSS, 10 * MSS);
        let params = testing::params::<Aimd>(&[(PARAM_AI, ai), (PARAM_MD, md)]);
        let cc = TestConn::<Aimd>::attach(testing::globals(), params, &mut tp);
        (cc, tp)
    }

    #[test]
    fn additive_increase_of_ai_segments_per_rtt() {
        let (mut cc, mut tp) = conn(3, 50);
        cc.ccv.flags = ccf::CWND_LIMITED | ccf::ABC_SENTAWND;
        cc.ccv.bytes_this_ack = MSS;
        cc.ack_received(&mut tp, CC_ACK);
        assert_eq!(tp.snd_cwnd, 23 * MSS);
        // Not a whole window acknowledged yet: no growth.
        cc.ack_received(&mut tp, CC_ACK);
        assert_eq!(tp.snd_cwnd, 23 * MSS);
    }

    #[test]
    fn multiplicative_decrease_to_md_percent_once_per_recovery() {
        let (mut cc, mut tp) = conn(1, 70);
        cc.cong_signal(&mut tp, CC_NDUPACK);
        assert_eq!(tp.snd_ssthresh, 14 * MSS);
        assert!(tp.in_fastrecovery());
        tp.snd_cwnd = 4 * MSS;
        cc.cong_signal(&mut tp, CC_NDUPACK);
        assert_eq!(
            tp.snd_ssthresh,
            14 * MSS,
            "a second loss in recovery changes nothing"
        );
        cc.assert_cb_destroy_frees_state();
    }
}
