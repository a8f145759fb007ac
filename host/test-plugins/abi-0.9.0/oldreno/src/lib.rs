//! Test fixture: Reno (RFC 5681 slow start and congestion avoidance, halving on loss) as a
//! CC module of framework ABI 0.9.0, from before the rate-sample hook, pacing and stack
//! parameters were appended. It counts the ACKs it grew cwnd on, so a test can tell that
//! a host of a later ABI really runs it.

use plugtcp_abi::abi_stable::std_types::RStr;
use plugtcp_abi::cc::{CcAlgorithm, CcVar, CC_ACK, CC_ECN, CC_NDUPACK, CC_RTO};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, Tcpcb};

pub struct OldReno;

impl CcAlgorithm for OldReno {
    const NAME: &'static str = "oldreno";
    const COUNTERS: &'static [RStr<'static>] = &[RStr::from_str("grown")];

    fn cb_init(_ccv: &CcVar, _tp: &Tcpcb) -> Result<Self, Errno> {
        Ok(OldReno)
    }

    fn ack_received(&mut self, ccv: &mut CcVar, tp: &mut Tcpcb, ack_type: u32) {
        if ack_type != CC_ACK || tp.in_recovery() {
            return;
        }
        let mss = tp.maxseg().max(1);
        let cwnd = tp.snd_cwnd;
        let incr = if cwnd <= tp.snd_ssthresh {
            ccv.bytes_this_ack.min(2 * mss)
        } else {
            (mss * mss / cwnd.max(1)).max(1)
        };
        tp.snd_cwnd = cwnd.saturating_add(incr);
        ccv.count(0, 1);
    }

    fn cong_signal(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb, sig: u32) {
        let mss = tp.maxseg().max(1);
        let half = (tp.snd_cwnd / 2).max(2 * mss);
        match sig {
            CC_NDUPACK if !tp.in_fastrecovery() => {
                tp.snd_ssthresh = half;
                tp.t_flags |= tf::FASTRECOVERY | tf::CONGRECOVERY;
            }
            CC_ECN if !tp.in_congrecovery() => {
                tp.snd_ssthresh = half;
                tp.snd_cwnd = half;
                tp.t_flags |= tf::CONGRECOVERY;
            }
            CC_RTO => {
                tp.snd_ssthresh = (tp.flight_size() / 2).max(2 * mss);
                tp.snd_cwnd = mss;
            }
            _ => {}
        }
    }

    fn post_recovery(&mut self, _ccv: &mut CcVar, tp: &mut Tcpcb) {
        tp.snd_cwnd = tp.snd_ssthresh;
    }
}

plugtcp_abi::export_cc_module!(OldReno);
