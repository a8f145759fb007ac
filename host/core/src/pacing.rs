//! The host's pacer (FreeBSD's hpts, Linux's fq): a connection's packets leave no faster
//! than its pacing rate. Every `output` call of its stack is one burst with an earliest
//! departure time (EDT); a burst that comes before its time is held here and released by
//! the timer wheel, and a stack that asks first ([`Pacer::wait_ns`]) is called back when
//! its time comes. One wakeup per connection on the worker's wheel: no thread, no polling.
//!
//! Rates are bytes per second of IP packets, headers included (as fq counts `skb->len`).

use std::collections::VecDeque;

use crate::conn::TIMER_TICK_NS;
use crate::timer::TimerId;

/// Credit an idle connection may carry into its next burst: one timer tick, so that the
/// wheel's granularity does not cost a fast connection its rate, and idling buys no burst.
pub const PACING_SLACK_NS: u64 = TIMER_TICK_NS;

/// Packets a connection may have held at once (a stack that ignores pacing and has a large
/// window): beyond it output fails with ENOBUFS, as a full qdisc would (fq's flow_limit is
/// 100 packets; a stack that does not ask first may hand over a whole window).
pub const MAX_HELD_PACKETS: usize = 10_000;

/// What a worker's pacer did: bursts paced, of them held for later, refused (hold queue
/// full), and the wire bytes paced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacingStats {
    pub bursts: u64,
    pub held: u64,
    pub refused: u64,
    pub bytes: u64,
}

/// SO_MAX_PACING_RATE unset (Linux's ~0).
pub const NO_MAX_RATE: u64 = u64::MAX;

/// One packet built for the wire, waiting for its departure time.
pub struct HeldPacket {
    pub depart_ns: u64,
    pub buf: Vec<u8>,
    pub len: usize,
    pub udp_port: u16,
    pub gso_size: u16,
}

/// A connection's pacing state (boxed in its `HostSide` once pacing is first set: most
/// connections are never paced).
pub struct Pacer {
    /// What the stack set (bytes/s; 0: none).
    pub stack_rate: u64,
    /// The stack's send quantum (bytes; 0: the default, see [`Pacer::quantum`]).
    pub stack_quantum: u32,
    /// SO_MAX_PACING_RATE (bytes/s), [`NO_MAX_RATE`] when unset.
    pub max_rate: u64,
    /// Earliest departure of the next burst (ns, host clock).
    next_ns: u64,
    /// The wakeup on the worker's wheel, if armed, and its deadline.
    pub timer: Option<(TimerId, u64)>,
    /// The stack was told to wait: call its `output` once `next_ns` has come.
    pub wake_stack: bool,
    /// Packets of bursts that came early, in order.
    pub held: VecDeque<HeldPacket>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            stack_rate: 0,
            stack_quantum: 0,
            max_rate: NO_MAX_RATE,
            next_ns: 0,
            timer: None,
            wake_stack: false,
            held: VecDeque::new(),
        }
    }
}

impl Pacer {
    /// The rate in force (bytes/s; 0: not paced): the stack's, capped at
    /// SO_MAX_PACING_RATE, which paces by itself when the stack sets none.
    pub fn rate(&self) -> u64 {
        match (self.stack_rate, self.max_rate) {
            (0, NO_MAX_RATE) => 0,
            (0, m) => m,
            (r, m) => r.min(m),
        }
    }

    /// The send quantum in force: the stack's, else as Linux's tcp_tso_autosize: a
    /// millisecond at the rate, at least two full-sized packets, at most 64 KiB.
    pub fn quantum(&self) -> u32 {
        if self.rate() == 0 {
            return 0;
        }
        if self.stack_quantum != 0 {
            return self.stack_quantum;
        }
        let per_ms = (self.rate() / 1000).min(64 * 1024) as u32;
        per_ms.max(3000)
    }

    /// Nanoseconds until the next burst may leave (0: now).
    pub fn wait_ns(&self, now: u64) -> u64 {
        if self.rate() == 0 {
            return 0;
        }
        self.next_ns.saturating_sub(now)
    }

    /// A burst of `wire_bytes` goes out at `now`: returns its departure time (`now` or
    /// later; later means hold it) and moves the next departure past it.
    pub fn depart(&mut self, now: u64, wire_bytes: u64) -> u64 {
        let rate = self.rate();
        if rate == 0 {
            return now;
        }
        let depart = self.next_ns.max(now.saturating_sub(PACING_SLACK_NS));
        let gap = (wire_bytes as u128 * 1_000_000_000 / rate as u128) as u64;
        self.next_ns = depart.saturating_add(gap);
        depart.max(now)
    }

    /// When the wheel must wake this connection: the first held packet, or the next
    /// departure if the stack waits for it.
    pub fn wakeup_at(&self) -> Option<u64> {
        let held = self.held.front().map(|p| p.depart_ns);
        let stack = self.wake_stack.then_some(self.next_ns);
        match (held, stack) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_leave_at_the_rate_and_idling_buys_no_burst() {
        let mut p = Pacer {
            stack_rate: 1_000_000, // 1 MB/s: 1000 bytes take 1 ms
            ..Pacer::default()
        };
        let t0 = 1_000_000_000;
        // The first burst goes at once, with the tick of credit any burst may have.
        assert_eq!(p.depart(t0, 1000), t0);
        assert_eq!(p.wait_ns(t0), 1_000_000 - PACING_SLACK_NS);
        // Too early: held until its time.
        assert_eq!(p.depart(t0 + 10, 1000), t0 + 1_000_000 - PACING_SLACK_NS);
        assert_eq!(p.wait_ns(t0), 2_000_000 - PACING_SLACK_NS);
        // After a long idle period: at most one tick of credit.
        let t1 = t0 + 1_000_000_000;
        assert_eq!(p.depart(t1, 1000), t1);
        assert_eq!(p.wait_ns(t1), 1_000_000 - PACING_SLACK_NS);
    }

    #[test]
    fn late_wakeups_catch_up_so_the_long_run_rate_holds() {
        // 10 Gbit/s, 1500-byte packets: 1.2 us apart, far below the 10 us tick.
        let mut p = Pacer {
            stack_rate: 1_250_000_000,
            ..Pacer::default()
        };
        let mut now = 0;
        let mut sent = 0u64;
        while now < 10_000_000 {
            while p.wait_ns(now) == 0 {
                p.depart(now, 1500);
                sent += 1500;
            }
            // The wheel fires on the next tick at or after the deadline.
            let due = now + p.wait_ns(now);
            now = due.div_ceil(TIMER_TICK_NS) * TIMER_TICK_NS;
        }
        let expected = 1_250_000_000u64 * 10 / 1000;
        assert!(
            sent.abs_diff(expected) <= 2 * 1500 + 12_500,
            "{sent} vs {expected}"
        );
    }

    #[test]
    fn max_rate_caps_and_paces_alone() {
        let mut p = Pacer::default();
        assert_eq!(p.rate(), 0);
        p.max_rate = 5000;
        assert_eq!(p.rate(), 5000);
        p.stack_rate = 9000;
        assert_eq!(p.rate(), 5000);
        p.stack_rate = 1000;
        assert_eq!(p.rate(), 1000);
        assert_eq!(p.quantum(), 3000);
        p.stack_rate = 1_250_000_000;
        p.max_rate = NO_MAX_RATE;
        assert_eq!(p.quantum(), 64 * 1024);
    }
}
