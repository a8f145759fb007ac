//! TIME_WAIT as FreeBSD's tcp_twcheck handles it, in the host for every function block (as
//! FreeBSD does it before any stack sees the segment): RSTs are ignored (RFC 1337), a new
//! SYN above rcv_nxt, or with a newer timestamp (RFC 6191), ends TIME_WAIT so the listener
//! can take it, a retransmitted FIN restarts the 2MSL timer, and anything but an exact
//! duplicate ACK is answered with an ACK. At most `maxtcptw` connections wait in TIME_WAIT:
//! past that the oldest is closed to make room, as FreeBSD's tcp_twstart reuses the oldest
//! compressed entry.

use plugtcp_abi::segment::{th, to, SegOut, TcpOpts};
use plugtcp_abi::seq::seq_gt;
use plugtcp_abi::stack::{tt, ConnEvent};
use plugtcp_abi::tcpcb::tf;
use plugtcp_abi::TcpState;

use crate::wire::Parsed;
use crate::Host;

/// What became of a segment for a connection in TIME_WAIT.
pub(crate) enum TimeWaitVerdict {
    /// Dropped or answered: nothing more to do.
    Done,
    /// A new connection request: TIME_WAIT is over; the listener takes the SYN.
    Recycle,
}

/// Whether a SYN (without ACK) for a connection in TIME_WAIT starts a new incarnation:
/// RFC 6191 when both used timestamps (a newer TSval, or the same TSval and a higher
/// sequence number), else RFC 1122 4.2.2.13 (a sequence number above rcv_nxt).
fn syn_reopens(tp: &plugtcp_abi::Tcpcb, p: &Parsed<'_>) -> bool {
    let both_ts = tp.t_flags & tf::RCVD_TSTMP != 0 && p.opts.has(to::TSTAMP);
    if both_ts {
        let newer = p.opts.tsval.wrapping_sub(tp.ts_recent) as i32;
        newer > 0 || (newer == 0 && seq_gt(p.seq, tp.rcv_nxt))
    } else {
        seq_gt(p.seq, tp.rcv_nxt)
    }
}

impl Host {
    /// Notes that the connection in `slot` entered TIME_WAIT; past `maxtcptw` waiting, the
    /// one that has waited longest is closed.
    pub(crate) fn time_wait_entered(&mut self, slot: usize) {
        let Some(id) = self.conns.id(slot) else {
            return;
        };
        self.time_wait.push_back(id);
        // FreeBSD sysctl_maxtcptw: 0 asks for the automatic size, maxsockets / 5.
        let max = match self.tunables.maxtcptw {
            0 => {
                let sockets = self
                    .gauges
                    .max_sockets
                    .load(std::sync::atomic::Ordering::Relaxed);
                (sockets / 5).max(1) as usize
            }
            n => n.max(0) as usize,
        };
        while self.time_wait.len() > max {
            let Some(old) = self.time_wait.pop_front() else {
                break;
            };
            let slot = self.conns.resolve(old);
            let waiting = self
                .conns
                .get_by_id(old)
                .is_some_and(|c| c.ctx.tp.t_state == TcpState::TimeWait);
            if waiting {
                self.stats.tw_recycled += 1;
                self.free_conn(slot);
            }
        }
        // Entries of connections that left TIME_WAIT (reopened, or their 2MSL ran out) are
        // dropped as they come to the front; keep the queue from holding many of them.
        if self.time_wait.len() > 2 * max.max(64) {
            let conns = &self.conns;
            self.time_wait.retain(|&id| {
                conns
                    .get_by_id(id)
                    .is_some_and(|c| c.ctx.tp.t_state == TcpState::TimeWait)
            });
        }
    }

    /// FreeBSD tcp_twcheck for the connection in `slot` (in TIME_WAIT).
    pub(crate) fn time_wait_input(&mut self, slot: usize, p: &Parsed<'_>) -> TimeWaitVerdict {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return TimeWaitVerdict::Done;
        };
        let tp = &c.ctx.tp;
        let f = p.flags;
        if f & th::RST != 0 {
            return TimeWaitVerdict::Done;
        }
        if f & (th::SYN | th::ACK) == th::SYN && syn_reopens(tp, p) {
            c.side.stop_timers(&mut self.worker);
            c.ctx.tp.t_state = TcpState::Closed;
            c.side.events |= 1 << ConnEvent::Closed as u8;
            self.after_call(slot);
            return TimeWaitVerdict::Recycle;
        }
        if f & th::ACK == 0 {
            return TimeWaitVerdict::Done;
        }
        let has_ts = p.opts.has(to::TSTAMP);
        if !has_ts && tp.ts_recent != 0 && self.tunables.tolerate_missing_ts == 0 {
            return TimeWaitVerdict::Done;
        }
        let tlen = p.payload.len() as u32;
        if f & th::FIN != 0 {
            let fin_seq = p
                .seq
                .wrapping_add(tlen)
                .wrapping_add(u32::from(f & th::SYN != 0));
            if fin_seq.wrapping_add(1) == tp.rcv_nxt {
                let msl = self.tunables.msl.max(0) as u64 * 1_000_000;
                c.side.start_timer(&mut self.worker, tt::TWO_MSL, 2 * msl);
            }
        }
        let flags = f & (th::FIN | th::SYN | th::RST | th::PUSH | th::ACK | th::URG);
        if flags == th::ACK && tlen == 0 && p.seq == tp.rcv_nxt && p.ack == tp.snd_nxt {
            return TimeWaitVerdict::Done;
        }
        // tcp_respond: our snd_nxt and rcv_nxt, the window truncated to the scale, the
        // timestamp option when the peer sends timestamps.
        let tp = &c.ctx.tp;
        let max = 65535u32 << tp.rcv_scale;
        let win = (c.side.rcv.space().min(max as usize) as u32 >> tp.rcv_scale).min(65535);
        let mut opts = TcpOpts::default();
        if tp.t_flags & tf::NOOPT == 0 && tp.t_flags & tf::SIGNATURE != 0 {
            opts.flags |= to::SIGNATURE;
        }
        if tp.t_flags & tf::NOOPT == 0 && tp.t_flags & tf::RCVD_TSTMP != 0 {
            opts.flags |= to::TSTAMP;
            opts.tsval = ((self.worker.now / 1_000_000) as u32).wrapping_add(tp.ts_offset);
            opts.tsecr = tp.ts_recent;
        }
        let seg = SegOut {
            seq: tp.snd_nxt,
            ack: tp.rcv_nxt,
            flags: th::ACK,
            win: win as u16,
            opts,
            ..Default::default()
        };
        self.send_conn_segment(slot, &seg);
        TimeWaitVerdict::Done
    }
}
