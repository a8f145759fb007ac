//! `rack`: the shared engine (stacks/engine) with RACK-TLP loss detection (RFC 8985) over a
//! per-segment send map, tail loss probes, PRR always on and microsecond timers, tuned by
//! `net.inet.tcp.rack.*`. Which connections it takes over follows FreeBSD's rack
//! (rack_handoff_ok): CLOSED and LISTEN fine; SYN_SENT and SYN_RCVD EAGAIN (come back when
//! the handshake is done); a FIN sent with more than one byte outstanding EAGAIN; a
//! connection without SACK EINVAL (RACK needs it).
//!
//! Pacing as FreeBSD's rack, behind `net.inet.tcp.rack.use_pacing` (0 by default, as in
//! FreeBSD): when set, the host paces the connection at `pacing.gp_per_ss` (250) percent
//! of its bandwidth estimate in slow start and `pacing.gp_per_ca`/`gp_per_rec` (200)
//! otherwise, in bursts of at most `pacing.pace_max_seg` (40) segments, capped at
//! `pacing.rate_cap` bytes/s when set. (FreeBSD estimates bandwidth from goodput
//! measurements; plugtcp's rack uses cwnd/srtt, as Linux's internal pacing does.) A
//! rate-based CC module's pacing takes precedence.

use plugtcp_abi::seq::seq_gt;
use plugtcp_abi::stack::StackCtx;
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::{Errno, TcpState};
use plugtcp_tcp_engine::{LossDetection, Personality, Stack};

pub use plugtcp_tcp_engine::ctr;

pub struct RackPersonality;

impl Personality for RackPersonality {
    const NAME: &'static str = "rack";
    const LOSS: LossDetection = LossDetection::RackTlp;
    const PARAMS: &'static [plugtcp_abi::cc::CcParamDesc] = plugtcp_tcp_engine::RACK_PARAMS;

    fn handoff_ok(cx: &StackCtx) -> Result<(), Errno> {
        let tp = &cx.tp;
        match tp.t_state {
            TcpState::Closed | TcpState::Listen => return Ok(()),
            TcpState::SynSent | TcpState::SynReceived => return Err(Errno::EAGAIN),
            _ => {}
        }
        if tp.t_flags & tf::SENTFIN != 0 && seq_gt(tp.snd_max, tp.snd_una.wrapping_add(1)) {
            return Err(Errno::EAGAIN);
        }
        if tp.t_flags & tf::SACK_PERMIT == 0 {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

/// The `rack` function block.
pub type Rack = Stack<RackPersonality>;

plugtcp_abi::export_function_block!(Rack);
