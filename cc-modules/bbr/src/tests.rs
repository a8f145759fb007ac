//! BBRv3 against draft-ietf-ccwg-bbr-04: whole connections over a simulated path (a
//! bottleneck of fixed rate, a base RTT, a drop-tail buffer, optionally CE marking above a
//! queue threshold) with delivery-rate samples made as the draft's section 4.1 makes them,
//! and single ACKs aimed at one rule. Everything goes through the module's ABI descriptor,
//! as a host and a stack drive it.

use super::*;
use plugtcp_abi::cc::{cc_feature, CongControlFn, CC_ACK};
use plugtcp_abi::tcpcb::TCP_INITIAL_SSTHRESH;
use plugtcp_abi::TcpState;
use plugtcp_tcpkit::cc::testing::{self, TestConn};
use proptest::prelude::*;
use std::collections::VecDeque;

const MSS: u32 = 1460;
const MSS64: u64 = MSS as u64;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// 10 Mbit/s of payload.
const RATE: u64 = 1_250_000;
/// 40 ms.
const RTT: u64 = 40 * MS;
/// RATE * RTT.
const BDP: u64 = RATE * RTT / SEC;

fn hook() -> CongControlFn {
    testing::algo::<Bbr>()
        .cong_control()
        .flatten()
        .expect("bbr is rate-based")
}

fn tcpcb() -> Tcpcb {
    let mut tp = testing::tcpcb(MSS, 10 * MSS, TCP_INITIAL_SSTHRESH);
    tp.t_state = TcpState::Established;
    tp.snd_wnd = 1 << 30;
    tp.snd_scale = 14;
    tp
}

/// A connection on bbr after conn_init and the INIT call at `now`.
fn conn_with(overrides: &[(usize, i64)], tp: &mut Tcpcb, now: u64) -> (TestConn<Bbr>, CcPacing) {
    let mut cc = TestConn::attach(testing::globals(), testing::params::<Bbr>(overrides), tp);
    cc.conn_init(tp);
    let mut pacing = CcPacing {
        max_pacing_rate: u64::MAX,
        ..CcPacing::default()
    };
    let rs = RateSample {
        now_ns: now,
        flags: rs_flags::INIT,
        ..RateSample::default()
    };
    cc.cong_control(hook(), tp, &rs, &mut pacing);
    assert!(!cc.faulted);
    (cc, pacing)
}

/// One ACK's rate sample to the module.
fn ack(cc: &mut TestConn<Bbr>, tp: &mut Tcpcb, pacing: &mut CcPacing, rs: &RateSample) {
    cc.cong_control(hook(), tp, rs, pacing);
    assert!(!cc.faulted, "cong_control panicked");
}

/// The wire rate of a payload rate for 1460-byte segments without options.
fn wire(rate: u64) -> u64 {
    rate * (MSS64 + 40) / MSS64
}

// ------------------------------------------------------------------------ the path

/// A segment in flight.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    end: u32,
    size: u64,
    send_ns: u64,
    ack_ns: u64,
    dropped: bool,
    ce: bool,
    /// P.delivered, P.delivered_time, P.first_send_time, P.tx_in_flight, P.lost,
    /// P.is_app_limited, and the delivered-with-ECE total.
    delivered: u64,
    delivered_ns: u64,
    first_send_ns: u64,
    tx_in_flight: u64,
    lost: u64,
    app_limited: bool,
    delivered_ce: u64,
}

/// A sender on bbr over one bottleneck: the stack's part (rate sampling as draft section
/// 4.1, loss marking when a later segment is acknowledged, fast recovery's edges, pacing)
/// and the path's (FIFO at `rate`, drop-tail `buffer`, `rtt` of propagation, CE above
/// `ce_thresh` queued bytes).
struct Sim {
    cc: TestConn<Bbr>,
    tp: Tcpcb,
    pacing: CcPacing,
    hook: CongControlFn,
    rate: u64,
    rtt: u64,
    buffer: u64,
    ce_thresh: Option<u64>,
    now: u64,
    link_free: u64,
    flight: VecDeque<Pkt>,
    in_flight: u64,
    delivered: u64,
    delivered_ns: u64,
    first_send_ns: u64,
    lost: u64,
    delivered_ce: u64,
    app_limited_mark: u64,
    next_send: u64,
    /// The application's supply in bytes/s (None: always data to send) and what it has
    /// supplied before `app_since`.
    app_rate: Option<u64>,
    app_since: u64,
    app_sent: u64,
    min_rtt: u64,
    acks: u64,
    rtos: u64,
}

impl Sim {
    fn new(overrides: &[(usize, i64)], rate: u64, rtt: u64, buffer: u64) -> Self {
        let mut tp = tcpcb();
        let now = SEC;
        let (cc, pacing) = conn_with(overrides, &mut tp, now);
        Sim {
            cc,
            tp,
            pacing,
            hook: hook(),
            rate,
            rtt,
            buffer,
            ce_thresh: None,
            now,
            link_free: now,
            flight: VecDeque::new(),
            in_flight: 0,
            delivered: 0,
            delivered_ns: now,
            first_send_ns: now,
            lost: 0,
            delivered_ce: 0,
            app_limited_mark: 0,
            next_send: now,
            app_rate: None,
            app_since: now,
            app_sent: 0,
            min_rtt: u64::MAX,
            acks: 0,
            rtos: 0,
        }
    }

    fn bbr(&self) -> &Bbr {
        self.cc.state()
    }

    /// From now on the application supplies `rate` bytes/s (None: unlimited).
    fn set_app_rate(&mut self, rate: Option<u64>) {
        self.app_rate = rate;
        self.app_since = self.now;
        self.app_sent = 0;
    }

    /// When the application has the next segment.
    fn app_data_at(&self) -> u64 {
        match self.app_rate {
            None => 0,
            Some(r) => self.app_since + (self.app_sent + MSS64) * SEC / r.max(1),
        }
    }

    fn cwnd_room(&self) -> bool {
        self.in_flight + MSS64 <= self.tp.snd_cwnd as u64
    }

    /// The next send time, if cwnd has room.
    fn next_send_time(&self) -> Option<u64> {
        self.cwnd_room()
            .then(|| self.now.max(self.next_send).max(self.app_data_at()))
    }

    /// Draft 4.1.2.4: no data to send while cwnd has room: mark the connection app-limited.
    fn check_app_limited(&mut self) {
        if self.cwnd_room() && self.app_data_at() > self.now {
            self.app_limited_mark = (self.delivered + self.in_flight).max(1);
        }
    }

    fn send(&mut self) {
        if self.in_flight == 0 {
            self.first_send_ns = self.now;
            self.delivered_ns = self.now;
        }
        let size = MSS64;
        let backlog_ns = self.link_free.saturating_sub(self.now);
        let queued = backlog_ns as u128 * self.rate as u128 / SEC as u128;
        let queued = queued as u64;
        let dropped = queued + size > self.buffer;
        let ce = !dropped && self.ce_thresh.is_some_and(|th| queued > th);
        let mut ack_ns = 0;
        if !dropped {
            self.link_free = self.link_free.max(self.now) + size * SEC / self.rate;
            ack_ns = self.link_free + self.rtt;
        }
        self.in_flight += size;
        self.tp.snd_max = self.tp.snd_max.wrapping_add(size as u32);
        self.tp.snd_nxt = self.tp.snd_max;
        self.flight.push_back(Pkt {
            end: self.tp.snd_max,
            size,
            send_ns: self.now,
            ack_ns,
            dropped,
            ce,
            delivered: self.delivered,
            delivered_ns: self.delivered_ns,
            first_send_ns: self.first_send_ns,
            tx_in_flight: self.in_flight,
            lost: self.lost,
            app_limited: self.app_limited_mark != 0,
            delivered_ce: self.delivered_ce,
        });
        if self.app_rate.is_some() {
            self.app_sent += size;
        }
        if let Some(gap) = ((size + 40) * SEC).checked_div(self.pacing.pacing_rate) {
            self.next_send = self.next_send.max(self.now) + gap;
        }
    }

    /// The ACK of the oldest segment the path delivered; the dropped ones sent before it
    /// are marked lost now.
    fn receive_ack(&mut self) -> RateSample {
        let mut newly_lost = 0;
        while self.flight.front().is_some_and(|p| p.dropped) {
            let p = self.flight.pop_front().unwrap();
            newly_lost += p.size;
            self.lost += p.size;
            self.in_flight -= p.size;
        }
        let prior_in_flight = self.in_flight + newly_lost;
        let p = self.flight.pop_front().expect("an ACK to receive");
        self.in_flight -= p.size;
        self.delivered += p.size;
        self.delivered_ns = self.now;
        if p.ce {
            self.delivered_ce += p.size;
        }
        if self.app_limited_mark != 0 && self.delivered > self.app_limited_mark {
            self.app_limited_mark = 0;
        }
        let send_elapsed = p.send_ns - p.first_send_ns;
        let ack_elapsed = self.now - p.delivered_ns;
        self.first_send_ns = p.send_ns;
        let interval = send_elapsed.max(ack_elapsed);
        let rtt = self.now - p.send_ns;
        self.min_rtt = self.min_rtt.min(rtt);
        let delivered = self.delivered - p.delivered;
        let valid = interval >= self.min_rtt && interval > 0;
        let mut flags = if valid { rs_flags::VALID } else { 0 };
        if p.ce {
            flags |= rs_flags::ECE;
        }
        RateSample {
            now_ns: self.now,
            flags,
            delivery_rate: if valid { delivered * SEC / interval } else { 0 },
            interval_us: if valid { interval / 1000 } else { 0 },
            delivered,
            delivered_ce: self.delivered_ce - p.delivered_ce,
            prior_delivered: p.delivered,
            tx_in_flight: p.tx_in_flight as u32,
            lost: (self.lost - p.lost) as u32,
            newly_acked: p.size as u32,
            newly_lost: newly_lost as u32,
            rtt_us: (rtt / 1000) as u32,
            prior_in_flight: prior_in_flight as u32,
            in_flight: self.in_flight as u32,
            is_app_limited: p.app_limited,
            tot_delivered: self.delivered,
            tot_lost: self.lost,
            tot_delivered_ce: self.delivered_ce,
        }
        .with_end(p.end, self)
    }

    /// Runs the connection until `end` (ns); `each` sees the module's state before and the
    /// sample of every ACK.
    fn run(&mut self, end: u64, mut each: impl FnMut(&Sim, &Bbr, &RateSample)) {
        loop {
            self.check_app_limited();
            let next_ack = self.flight.iter().find(|p| !p.dropped).map(|p| p.ack_ns);
            let next_send = self.next_send_time();
            let t = match (next_ack, next_send) {
                (Some(a), Some(s)) => a.min(s),
                (Some(a), None) => a,
                (None, Some(s)) => s,
                (None, None) => {
                    if self.flight.is_empty() {
                        break;
                    }
                    // Everything in flight was dropped: a retransmission timeout.
                    self.now = self.now.max(self.next_send) + 200 * MS;
                    self.timeout();
                    continue;
                }
            };
            if t > end {
                self.now = end;
                break;
            }
            self.now = t;
            if next_ack == Some(t) {
                let before = self.bbr().clone();
                let rs = self.receive_ack();
                self.acks += 1;
                each(self, &before, &rs);
            } else {
                self.send();
            }
        }
    }

    /// An RTO: the stack's cong_signal(CC_RTO), everything marked lost, the RTO's
    /// cong_control.
    fn timeout(&mut self) {
        self.rtos += 1;
        self.cc.on_cong_signal(&mut self.tp, CC_RTO);
        let mut lost = 0;
        for p in self.flight.drain(..) {
            lost += p.size;
        }
        self.lost += lost;
        self.in_flight = 0;
        self.tp.snd_una = self.tp.snd_max;
        let rs = RateSample {
            now_ns: self.now,
            flags: rs_flags::RTO,
            newly_lost: lost as u32,
            tot_delivered: self.delivered,
            tot_lost: self.lost,
            tot_delivered_ce: self.delivered_ce,
            ..RateSample::default()
        };
        self.cc
            .cong_control(self.hook, &mut self.tp, &rs, &mut self.pacing);
        assert!(!self.cc.faulted);
    }
}

trait WithEnd {
    fn with_end(self, end: u32, sim: &mut Sim) -> RateSample;
}

impl WithEnd for RateSample {
    /// The stack's part of the ACK up to `end` (recovery's edges, the control block), then
    /// the module's cong_control with this sample.
    fn with_end(self, end: u32, sim: &mut Sim) -> RateSample {
        let tp = &mut sim.tp;
        if tp.in_fastrecovery() && seq_geq(end, tp.snd_recover) {
            let pipe = sim.in_flight as u32;
            sim.cc.on_post_recovery(tp, end, pipe);
        }
        tp.snd_una = end;
        if self.newly_lost > 0 && !tp.in_fastrecovery() {
            sim.cc.on_cong_signal(tp, CC_NDUPACK);
        }
        if self.rtt_us > 0 {
            tp.t_srtt = if tp.t_srtt == 0 {
                self.rtt_us
            } else {
                (tp.t_srtt * 7 + self.rtt_us) / 8
            };
        }
        tp.t_rcvtime = self.now_ns;
        sim.cc.cong_control(sim.hook, tp, &self, &mut sim.pacing);
        assert!(!sim.cc.faulted, "cong_control panicked");
        self
    }
}

/// Whether `x` is within `tol` (relative) of `want`.
fn near(x: u64, want: u64, tol: f64) -> bool {
    (x as f64 - want as f64).abs() <= tol * want as f64
}

// ------------------------------------------------------------------- whole connections

/// Startup doubles its rate each round until the bottleneck's rate, then leaves within
/// the three rounds the full-pipe estimator waits; max_bw is the bottleneck rate; Drain
/// and the ProbeBW cycle follow in the draft's order; the pacing rate is
/// pacing_gain * bw * 0.99 in wire bytes after every ACK once the pipe is full.
#[test]
fn startup_exits_on_plateau_then_probe_bw_cycles() {
    let mut sim = Sim::new(&[], RATE, RTT, 8 * BDP);
    let mut first_full_rate_round = None;
    let mut exit_round = None;
    let mut states = vec![State::Startup];
    let mut pacing_checked = 0;
    sim.run(6 * SEC, |sim, before, rs| {
        let b = sim.bbr();
        if first_full_rate_round.is_none() && rs.delivery_rate >= RATE * 9 / 10 {
            first_full_rate_round = Some(b.round_count);
        }
        if before.state == State::Startup && b.state != State::Startup {
            exit_round = Some(b.round_count);
        }
        if *states.last().unwrap() != b.state {
            states.push(b.state);
        }
        if before.full_bw_reached {
            // SetPacingRate(): exactly gain * bw * (1 - 1%), as wire bytes; at bw when
            // nothing is left in flight (never here: bulk data).
            let want = b.bw as u128 * b.pacing_gain as u128 * 990 / 1_000_000;
            assert_eq!(sim.pacing.pacing_rate, wire(want as u64));
            assert_eq!(b.pacing_rate, want as u64);
            pacing_checked += 1;
        } else if before.has_seen_rtt && !b.full_bw_reached {
            // Startup never lowers the rate (once the 1 ms placeholder RTT is replaced).
            assert!(b.pacing_rate >= before.pacing_rate);
        }
    });
    let b = sim.bbr();
    let plateau = first_full_rate_round.expect("the bottleneck rate was reached");
    let exit = exit_round.expect("Startup ended");
    assert!(
        exit <= plateau + 4,
        "Startup ended in round {exit}, the plateau began in round {plateau}"
    );
    assert!(
        (RATE * 97 / 100..=RATE * 101 / 100).contains(&b.max_bw()),
        "max_bw {} for a bottleneck of {RATE}",
        b.max_bw()
    );
    assert_eq!(sim.cc.counter(counter::STARTUP_EXITS), 1);
    assert_eq!(sim.cc.counter(counter::STARTUP_LOSS_EXITS), 0);
    assert_eq!(sim.lost, 0, "a deep buffer: no loss");
    assert!(pacing_checked > 1000);
    // Startup -> Drain -> DOWN -> CRUISE -> REFILL -> UP -> DOWN ..., where DOWN may last
    // no longer than the ACK that entered it (in flight already low enough to cruise),
    // and ProbeRTT may come in between.
    assert_eq!(&states[..2], &[State::Startup, State::Drain], "{states:?}");
    for w in states.windows(2) {
        use State::*;
        let ok = matches!(
            (w[0], w[1]),
            (Startup, Drain)
                | (Drain, ProbeBwDown | ProbeBwCruise)
                | (ProbeBwDown, ProbeBwCruise | ProbeBwRefill)
                | (ProbeBwCruise, ProbeBwRefill)
                | (ProbeBwRefill, ProbeBwUp)
                | (ProbeBwUp, ProbeBwDown | ProbeBwCruise)
                | (ProbeRtt, ProbeBwCruise | Startup)
                | (_, ProbeRtt)
        );
        assert!(ok, "{:?} -> {:?} in {states:?}", w[0], w[1]);
    }
    let cycle = [State::ProbeBwRefill, State::ProbeBwUp];
    assert!(states.windows(2).any(|w| w == cycle), "{states:?}");
    assert!(sim.cc.counter(counter::PROBE_BW_REFILLS) >= 2);
    // ssthresh reports the BDP after Startup (monitoring).
    assert!(
        near(sim.tp.snd_ssthresh as u64, BDP, 0.25),
        "{}",
        sim.tp.snd_ssthresh
    );
    // In steady state the queue stays small: the mean RTT within 1.25 base RTTs, the
    // largest within what cwnd allows in ProbeBW_UP (2.25 BDP in flight); the throughput
    // close to the bottleneck's.
    let (mut worst_rtt, mut sum_rtt, mut n) = (0, 0, 0);
    let delivered_before = sim.delivered;
    sim.run(10 * SEC, |_, _, rs| {
        worst_rtt = worst_rtt.max(rs.rtt_us as u64);
        sum_rtt += rs.rtt_us as u64;
        n += 1;
    });
    let goodput = (sim.delivered - delivered_before) * SEC / (4 * SEC);
    assert!(goodput >= RATE * 9 / 10, "goodput {goodput}");
    assert!(
        sum_rtt / n * 1000 <= RTT * 5 / 4,
        "mean RTT {} us",
        sum_rtt / n
    );
    assert!(
        worst_rtt * 1000 <= RTT * 9 / 4 + 5 * MS,
        "worst RTT {worst_rtt} us"
    );
}

/// ProbeRTT: entered once probe_rtt_min_delay has not been refreshed for 5 s (a bulk flow
/// never sees a lower RTT), cwnd at max(0.5 * BDP, 4 segments) for at least 200 ms and a
/// round, then ProbeBW_CRUISE with the cwnd from before; max_bw survives ProbeRTT's
/// low-rate samples.
#[test]
fn probe_rtt_after_interval_then_restores_cwnd() {
    let mut sim = Sim::new(&[], RATE, RTT, 8 * BDP);
    let mut entered: Option<(u64, u64)> = None; // (time, prior_cwnd)
    let mut low_since: Option<u64> = None;
    let mut exited: Option<(u64, State, u64)> = None;
    let mut probe_cwnd = 0;
    sim.run(14 * SEC, |sim, before, _rs| {
        let b = sim.bbr();
        if before.state != State::ProbeRtt && b.state == State::ProbeRtt && entered.is_none() {
            assert!(
                sim.now - before.probe_rtt_min_stamp > 5 * SEC,
                "ProbeRTT {} ns after the last refresh",
                sim.now - before.probe_rtt_min_stamp
            );
            assert!(sim.now - before.probe_rtt_min_stamp < 5 * SEC + 10 * MS);
            entered = Some((sim.now, b.prior_cwnd));
            probe_cwnd = b.bdp_multiple(b.bw, 500).max(MIN_PIPE_CWND_SEGS * MSS64);
        }
        if b.state == State::ProbeRtt && entered.is_some() && exited.is_none() {
            assert!(
                sim.tp.snd_cwnd as u64 <= probe_cwnd,
                "cwnd {}",
                sim.tp.snd_cwnd
            );
            if low_since.is_none() && sim.in_flight <= probe_cwnd {
                low_since = Some(sim.now);
            }
        }
        if before.state == State::ProbeRtt && b.state != State::ProbeRtt && exited.is_none() {
            exited = Some((sim.now, b.state, sim.tp.snd_cwnd as u64));
        }
    });
    let (t_in, prior) = entered.expect("ProbeRTT entered");
    let (t_out, next, cwnd_after) = exited.expect("ProbeRTT left");
    let low = low_since.expect("inflight came down");
    assert!(t_out - low >= 200 * MS, "held {} ms", (t_out - low) / MS);
    assert!(
        t_out - t_in < 200 * MS + 6 * RTT,
        "ProbeRTT lasted {} ms",
        (t_out - t_in) / MS
    );
    assert_eq!(next, State::ProbeBwCruise);
    assert!(prior >= BDP * 19 / 10, "prior cwnd {prior}");
    assert!(
        cwnd_after * 10 >= prior * 9,
        "cwnd {cwnd_after} after, {prior} before"
    );
    assert!(sim.cc.counter(counter::PROBE_RTT_ENTRIES) >= 1);
    assert!(sim.bbr().max_bw() >= RATE * 95 / 100);
}

/// A shallow buffer: ProbeBW_UP meets a loss rate above 2% and HandleInflightTooHigh
/// sets inflight_longterm to max(tx_in_flight, 0.7 * min(BDP, cwnd)) and goes DOWN; the
/// flow keeps its throughput and its loss rate low.
#[test]
fn shallow_buffer_loss_sets_inflight_longterm() {
    let mut sim = Sim::new(&[], RATE, RTT, BDP / 4);
    let mut cuts = 0;
    sim.run(20 * SEC, |sim, before, rs| {
        let b = sim.bbr();
        if sim.cc.counter(counter::INFLIGHT_TOO_HIGH) > cuts {
            cuts = sim.cc.counter(counter::INFLIGHT_TOO_HIGH);
            assert!(before.is_bw_probe_sample && before.full_bw_reached);
            assert!(rs.lost as u64 * 1000 > rs.tx_in_flight as u64 * 20);
            if !rs.is_app_limited {
                // max(tx_in_flight, 0.7 * min(BDP, cwnd)): at least tx_in_flight, at most
                // the larger of it and 0.7 * BDP.
                let tx = rs.tx_in_flight as u64;
                let hi = tx.max(before.bdp(before.bw) * 7 / 10 + 1);
                assert!(
                    b.inflight_longterm >= tx && b.inflight_longterm <= hi,
                    "inflight_longterm {} for tx_in_flight {tx}, bound {hi}",
                    b.inflight_longterm
                );
            }
            if before.state == State::ProbeBwUp {
                assert_eq!(b.state, State::ProbeBwDown);
            }
            assert!(b.prev_probe_too_high);
        }
    });
    assert!(cuts >= 1, "no probe went too high");
    assert!(sim.bbr().inflight_longterm < INF);
    // Loss below 5% of what was sent, throughput above 80% of the bottleneck.
    assert!(
        sim.lost * 20 < sim.delivered,
        "lost {} of {}",
        sim.lost,
        sim.delivered
    );
    assert!(
        sim.delivered >= RATE * 19 * 8 / 10,
        "delivered {}",
        sim.delivered
    );
}

/// ECN with a shallow marking threshold: Startup ends after two rounds with more than
/// half of the data CE-marked, long before the (deep) buffer fills.
#[test]
fn startup_exits_on_high_ce_fraction() {
    let mut sim = Sim::new(&[], RATE, RTT, 16 * BDP);
    sim.ce_thresh = Some(10 * MSS64);
    sim.tp.t_flags2 |= tf2::ECN_PERMIT;
    sim.run(3 * SEC, |_, _, _| {});
    assert_eq!(sim.cc.counter(counter::STARTUP_ECN_EXITS), 1);
    assert_eq!(sim.cc.counter(counter::STARTUP_EXITS), 1);
    assert_eq!(sim.lost, 0);
    assert!(sim.bbr().inflight_longterm < 4 * BDP);
    // ecn_enable = 0: the same path, CE ignored: Startup ends on the plateau.
    let mut sim = Sim::new(&[(param::ECN_ENABLE, 0)], RATE, RTT, 16 * BDP);
    sim.ce_thresh = Some(10 * MSS64);
    sim.tp.t_flags2 |= tf2::ECN_PERMIT;
    sim.run(3 * SEC, |_, _, _| {});
    assert_eq!(sim.cc.counter(counter::STARTUP_ECN_EXITS), 0);
    assert_eq!(sim.cc.counter(counter::STARTUP_EXITS), 1);
    assert_eq!(sim.cc.counter(counter::ECN_RESPONSES), 0);
    assert_eq!(sim.bbr().inflight_longterm, INF);
}

/// App-limited samples do not lower max_bw: a bulk phase measures the bottleneck, then the
/// application supplies a fifth of it for 15 s (several ProbeBW cycles): max_bw stays.
#[test]
fn app_limited_samples_keep_max_bw() {
    let mut sim = Sim::new(&[], RATE, RTT, 8 * BDP);
    sim.run(4 * SEC, |_, _, _| {});
    let measured = sim.bbr().max_bw();
    assert!(measured >= RATE * 95 / 100);
    sim.set_app_rate(Some(RATE / 5));
    let mut app_limited = 0u64;
    let mut acks = 0u64;
    sim.run(19 * SEC, |sim, _, rs| {
        acks += 1;
        app_limited += rs.is_app_limited as u64;
        assert!(
            sim.bbr().max_bw() >= measured,
            "max_bw fell to {}",
            sim.bbr().max_bw()
        );
    });
    assert!(
        app_limited * 10 >= acks * 9,
        "{app_limited} of {acks} app-limited"
    );
}

/// The bottleneck really slows down (to a quarter): max_bw follows it within a few
/// ProbeBW cycles (the filter holds two), and so do min_rtt and cwnd.
#[test]
fn max_bw_follows_a_slower_bottleneck() {
    let mut sim = Sim::new(&[], RATE, RTT, 2 * BDP);
    sim.run(4 * SEC, |_, _, _| {});
    sim.rate = RATE / 4;
    sim.run(32 * SEC, |_, _, _| {});
    let b = sim.bbr();
    let bw = b.max_bw();
    assert!(
        (RATE / 4 * 95 / 100..=RATE / 4 * 101 / 100).contains(&bw),
        "max_bw {bw}"
    );
    assert!(
        b.min_rtt_us * 1000 <= RTT * 12 / 10,
        "min_rtt {} us",
        b.min_rtt_us
    );
    assert!((sim.tp.snd_cwnd as u64) < BDP, "cwnd {}", sim.tp.snd_cwnd);
}

// ------------------------------------------------------------------------- single ACKs

/// A connection at steady state in `state`: bandwidth RATE, min_rtt 40 ms, the pipe full,
/// cwnd 2 BDP, the clock at `now`, no round or loss round ending on the next ACKs.
fn steady(overrides: &[(usize, i64)], state: State, now: u64) -> (TestConn<Bbr>, Tcpcb, CcPacing) {
    let mut tp = tcpcb();
    let (mut cc, pacing) = conn_with(overrides, &mut tp, now);
    let p = Params::from_values(testing::params::<Bbr>(overrides));
    let b = cc.state_mut();
    b.set_state(state, &p);
    b.full_bw_reached = true;
    b.max_bw_filter = [RATE, 0];
    b.bw = RATE;
    b.min_rtt_us = RTT / 1000;
    b.probe_rtt_min_us = RTT / 1000;
    b.min_rtt_stamp = now;
    b.probe_rtt_min_stamp = now;
    b.cycle_stamp = now;
    b.bw_probe_wait_ns = 10 * SEC;
    b.rounds_since_probe_up = 0;
    b.next_round_delivered = u64::MAX;
    b.loss_round_delivered = u64::MAX;
    b.pacing_rate = RATE;
    tp.snd_cwnd = (2 * BDP) as u32;
    (cc, tp, pacing)
}

/// A valid sample at `now`: a round's worth of data at RATE, sent with `tx_in_flight`
/// in flight, `lost` lost since.
fn sample(now: u64, tx_in_flight: u64, lost: u64, in_flight: u64) -> RateSample {
    RateSample {
        now_ns: now,
        flags: rs_flags::VALID,
        delivery_rate: RATE,
        interval_us: RTT / 1000,
        delivered: BDP,
        prior_delivered: 10_000_000,
        tx_in_flight: tx_in_flight as u32,
        lost: lost as u32,
        newly_acked: MSS,
        rtt_us: (RTT / 1000) as u32 + 1000,
        prior_in_flight: (in_flight + MSS64) as u32,
        in_flight: in_flight as u32,
        tot_delivered: 10_000_000 + BDP,
        tot_lost: lost,
        ..RateSample::default()
    }
}

/// HandleInflightTooHigh in ProbeBW_UP: a loss rate above 2% cuts inflight_longterm to
/// max(tx_in_flight, beta * min(BDP, cwnd)) and goes DOWN; 2% or less does nothing.
#[test]
fn loss_above_thresh_in_probe_up_cuts_inflight_longterm() {
    let now = 100 * SEC;
    // 1.4% lost: within the threshold.
    let (mut cc, mut tp, mut pacing) = steady(&[], State::ProbeBwUp, now);
    cc.state_mut().is_bw_probe_sample = true;
    ack(
        &mut cc,
        &mut tp,
        &mut pacing,
        &sample(now + MS, 70 * MSS64, MSS64, 60 * MSS64),
    );
    assert_eq!(cc.state().state, State::ProbeBwUp);
    assert_eq!(cc.state().inflight_longterm, INF);
    assert_eq!(cc.counter(counter::INFLIGHT_TOO_HIGH), 0);

    // 10% of a small flight lost: the BDP bound (0.7 * min(BDP, cwnd) = 0.7 * BDP) wins.
    let (mut cc, mut tp, mut pacing) = steady(&[], State::ProbeBwUp, now);
    cc.state_mut().is_bw_probe_sample = true;
    ack(
        &mut cc,
        &mut tp,
        &mut pacing,
        &sample(now + MS, 20 * MSS64, 2 * MSS64, 40 * MSS64),
    );
    let b = cc.state();
    assert_eq!(b.inflight_longterm, BDP * 7 / 10);
    assert_eq!(b.state, State::ProbeBwDown);
    assert!(b.prev_probe_too_high && !b.is_bw_probe_sample);
    assert_eq!(cc.counter(counter::INFLIGHT_TOO_HIGH), 1);
    // DOWN's volume cap is the new bound.
    assert_eq!(tp.snd_cwnd as u64, BDP * 7 / 10);

    // 3% of a large flight lost: tx_in_flight wins.
    let (mut cc, mut tp, mut pacing) = steady(&[], State::ProbeBwUp, now);
    cc.state_mut().is_bw_probe_sample = true;
    ack(
        &mut cc,
        &mut tp,
        &mut pacing,
        &sample(now + MS, 80 * MSS64, 3 * MSS64, 70 * MSS64),
    );
    assert_eq!(cc.state().inflight_longterm, 80 * MSS64);

    // beta = 0.5 (sysctl): the bound follows.
    let (mut cc, mut tp, mut pacing) = steady(&[(param::BETA, 500)], State::ProbeBwUp, now);
    cc.state_mut().is_bw_probe_sample = true;
    ack(
        &mut cc,
        &mut tp,
        &mut pacing,
        &sample(now + MS, 10 * MSS64, 2 * MSS64, 40 * MSS64),
    );
    assert_eq!(cc.state().inflight_longterm, BDP / 2);

    // Not a probe's sample (CRUISE): no long-term cut.
    let (mut cc, mut tp, mut pacing) = steady(&[], State::ProbeBwCruise, now);
    ack(
        &mut cc,
        &mut tp,
        &mut pacing,
        &sample(now + MS, 20 * MSS64, 2 * MSS64, 19 * MSS64),
    );
    assert_eq!(cc.state().inflight_longterm, INF);
}

/// Loss when not probing: at the end of the loss round the short-term model is cut to
/// max(latest, 0.7 * bound), once per round.
#[test]
fn loss_in_cruise_cuts_short_term_model_once_per_round() {
    let now = 100 * SEC;
    let (mut cc, mut tp, mut pacing) = steady(&[], State::ProbeBwCruise, now);
    // A loss, then more ACKs within the round.
    let mut rs = sample(now + MS, 60 * MSS64, MSS64, 60 * MSS64);
    rs.newly_lost = MSS;
    rs.delivery_rate = RATE / 2;
    rs.delivered = BDP / 2;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    assert!(cc.state().is_loss_in_round);
    assert_eq!(cc.state().loss_round_delivered, rs.tot_delivered);
    let mut rs2 = sample(now + 2 * MS, 60 * MSS64, MSS64, 60 * MSS64);
    rs2.delivery_rate = RATE / 2;
    rs2.delivered = BDP / 2;
    rs2.tot_delivered += MSS64;
    ack(&mut cc, &mut tp, &mut pacing, &rs2);
    assert_eq!(
        cc.state().inflight_shortterm,
        INF,
        "not before the round ends"
    );
    // The ACK of data sent after the loss ends the loss round.
    let cwnd0 = tp.snd_cwnd as u64;
    let mut rs3 = sample(now + 3 * MS, 60 * MSS64, 0, 60 * MSS64);
    rs3.prior_delivered = rs.tot_delivered;
    rs3.tot_delivered = rs.tot_delivered + 2 * MSS64;
    rs3.delivery_rate = RATE / 2;
    rs3.delivered = BDP / 2;
    ack(&mut cc, &mut tp, &mut pacing, &rs3);
    let b = cc.state();
    assert_eq!(b.bw_shortterm, (RATE * 7 / 10).max(RATE / 2));
    assert_eq!(b.inflight_shortterm, (cwnd0 * 7 / 10).max(BDP / 2));
    assert_eq!(b.bw, b.bw_shortterm);
    assert!(!b.is_loss_in_round);
    assert_eq!(cc.counter(counter::LOSS_RESPONSES), 1);
    assert_eq!(tp.snd_cwnd as u64, b.inflight_shortterm);
}

/// CE marks (ECE) in a round while cruising cut inflight_shortterm by
/// 1 - ecn_alpha * ecn_factor at the end of the round; with ecn_enable = 0, or without
/// ECN on the connection, nothing happens.
#[test]
fn ce_marks_cut_inflight_shortterm() {
    let now = 100 * SEC;
    let run = |overrides: &[(usize, i64)], ecn: bool| {
        let (mut cc, mut tp, mut pacing) = steady(overrides, State::ProbeBwCruise, now);
        if ecn {
            tp.t_flags2 |= tf2::ECN_PERMIT;
        }
        let mut rs = sample(now + MS, 60 * MSS64, 0, 60 * MSS64);
        rs.flags |= rs_flags::ECE;
        rs.delivered_ce = MSS64;
        ack(&mut cc, &mut tp, &mut pacing, &rs);
        let cwnd0 = tp.snd_cwnd as u64;
        let mut rs2 = sample(now + 2 * MS, 60 * MSS64, 0, 60 * MSS64);
        rs2.prior_delivered = 0;
        cc.state_mut().loss_round_delivered = 0;
        ack(&mut cc, &mut tp, &mut pacing, &rs2);
        (cc, tp, cwnd0)
    };
    // ecn_alpha starts at 1.0: the cut is 1 - 0.333.
    let (cc, tp, cwnd0) = run(&[], true);
    let b = cc.state();
    assert!(b.ecn_eligible);
    assert_eq!(b.inflight_shortterm, cwnd0 * 667 / 1000);
    assert_eq!(tp.snd_cwnd as u64, b.inflight_shortterm);
    assert_eq!(b.bw_shortterm, INF, "ECN cuts the volume only");
    assert_eq!(cc.counter(counter::ECN_RESPONSES), 1);
    // ecn_factor 500: a cut of a half.
    let (cc, _, cwnd0) = run(&[(param::ECN_FACTOR, 500)], true);
    assert_eq!(cc.state().inflight_shortterm, cwnd0 / 2);
    // Switched off, or no ECN negotiated.
    for (overrides, ecn) in [(&[(param::ECN_ENABLE, 0)][..], true), (&[][..], false)] {
        let (cc, tp, cwnd0) = run(overrides, ecn);
        assert!(!cc.state().ecn_eligible);
        assert_eq!(cc.state().inflight_shortterm, INF);
        assert!(tp.snd_cwnd as u64 >= cwnd0);
        assert_eq!(cc.counter(counter::ECN_RESPONSES), 0);
    }
    // ecn_max_rtt_us below min_rtt (Linux's 5 ms): not eligible.
    let (cc, _, _) = run(&[(param::ECN_MAX_RTT_US, 5000)], true);
    assert!(!cc.state().ecn_eligible);
    assert_eq!(cc.state().inflight_shortterm, INF);
}

/// A CE fraction above ecn_thresh in a probe's sample is "inflight too high", like loss.
#[test]
fn ce_fraction_above_thresh_ends_probe_up() {
    let now = 100 * SEC;
    let (mut cc, mut tp, mut pacing) = steady(&[], State::ProbeBwUp, now);
    tp.t_flags2 |= tf2::ECN_PERMIT;
    cc.state_mut().is_bw_probe_sample = true;
    let mut rs = sample(now + MS, 60 * MSS64, 0, 60 * MSS64);
    rs.flags |= rs_flags::ECE;
    rs.delivered_ce = rs.delivered * 4 / 10;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    assert_eq!(
        cc.state().state,
        State::ProbeBwUp,
        "40% CE is below the threshold"
    );
    rs.delivered_ce = rs.delivered * 6 / 10;
    rs.now_ns += MS;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    assert_eq!(cc.state().state, State::ProbeBwDown);
    assert_eq!(cc.state().inflight_longterm, 60 * MSS64);
    assert_eq!(cc.counter(counter::INFLIGHT_TOO_HIGH), 1);
}

/// The initial pacing rate: 2.77 * initial cwnd / srtt (1 ms without an RTT), as wire
/// bytes (40 bytes of headers, 52 with timestamps); the send quantum 1 ms of it within
/// [2 segments, 64 KB].
#[test]
fn initial_pacing_rate_and_send_quantum() {
    let mut tp = tcpcb();
    let (cc, pacing) = conn_with(&[], &mut tp, SEC);
    // 14600 bytes per ms * 2.77 = 40_442_000 bytes/s of payload.
    assert_eq!(cc.state().pacing_rate, 40_442_000);
    assert_eq!(pacing.pacing_rate, 40_442_000 * 1500 / 1460);
    assert_eq!(pacing.send_quantum, 40_442);

    let mut tp = tcpcb();
    tp.t_flags |= tf::REQ_TSTMP | tf::RCVD_TSTMP;
    tp.snd_cwnd = 10 * 1448;
    tp.t_srtt = 20_000;
    let (cc, pacing) = conn_with(&[], &mut tp, SEC);
    // 14480 bytes per 20 ms * 2.77 = 2_005_480 bytes/s; 1448 + 52 bytes a packet.
    assert_eq!(cc.state().pacing_rate, 2_005_480);
    assert_eq!(pacing.pacing_rate, 2_077_500);
    assert_eq!(pacing.send_quantum, 2 * 1448);

    // A fast path: 64 KB at most.
    let mut tp = tcpcb();
    tp.snd_cwnd = 1000 * MSS;
    let (_, pacing) = conn_with(&[], &mut tp, SEC);
    assert_eq!(pacing.send_quantum, 65_536);

    // IPv6: 20 bytes more a packet.
    let mut tp = tcpcb();
    tp.t_flags2 |= tf2::INET6;
    let (_, pacing) = conn_with(&[], &mut tp, SEC);
    assert_eq!(pacing.pacing_rate, 40_442_000 * 1520 / 1460);
}

/// An RTO saves cwnd, sets it to in flight + 1 segment, lets it grow, and restores it
/// when everything outstanding at the RTO is acknowledged; a spurious RTO undoes the model
/// and the state.
#[test]
fn rto_saves_and_restores_cwnd() {
    let now = 100 * SEC;
    let mut tp = tcpcb();
    let (mut cc, mut pacing) = conn_with(&[], &mut tp, now);
    tp.snd_cwnd = 40 * MSS;
    tp.snd_una = 1000;
    tp.snd_max = 1000 + 40 * MSS;
    cc.on_cong_signal(&mut tp, CC_RTO);
    assert_eq!(tp.snd_cwnd, MSS);
    assert_eq!(cc.state().prior_cwnd, 40 * MSS64);
    assert_eq!(cc.state().rto_recover, Some(1000 + 40 * MSS));
    assert_eq!(cc.counter(counter::RTOS), 1);
    let rto = RateSample {
        now_ns: now,
        flags: rs_flags::RTO,
        newly_lost: 40 * MSS,
        in_flight: 0,
        ..RateSample::default()
    };
    ack(&mut cc, &mut tp, &mut pacing, &rto);
    assert_eq!(tp.snd_cwnd, MSS, "in flight (0) + 1 segment");
    // A second RTO of the same episode keeps the saved cwnd.
    cc.on_cong_signal(&mut tp, CC_RTO);
    let rto2 = RateSample {
        in_flight: 2 * MSS,
        ..rto
    };
    ack(&mut cc, &mut tp, &mut pacing, &rto2);
    assert_eq!(tp.snd_cwnd, 3 * MSS);
    assert_eq!(cc.state().prior_cwnd, 40 * MSS64);
    assert_eq!(cc.counter(counter::RTOS), 1);
    // ACKs of the retransmissions: cwnd grows by what they deliver...
    let mut rs = sample(now + 50 * MS, 2 * MSS64, 0, MSS64);
    rs.prior_delivered = 0;
    rs.tot_delivered = MSS64;
    tp.snd_una = 1000 + MSS;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    assert!(
        tp.snd_cwnd >= 4 * MSS && tp.snd_cwnd < 40 * MSS,
        "{}",
        tp.snd_cwnd
    );
    assert!(cc.state().rto_recover.is_some());
    // ...until snd_una passes what was outstanding: cwnd back.
    tp.snd_una = 1000 + 40 * MSS;
    rs.now_ns += MS;
    rs.tot_delivered += MSS64;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    assert_eq!(cc.state().rto_recover, None);
    assert!(
        tp.snd_cwnd >= 40 * MSS,
        "cwnd {} after RTO recovery",
        tp.snd_cwnd
    );

    // A spurious RTO in ProbeBW after a probe went too high: the bounds and the probe back.
    let (mut cc, mut tp, _) = steady(&[], State::ProbeBwUp, now);
    tp.snd_cwnd = 60 * MSS;
    cc.on_cong_signal(&mut tp, CC_RTO);
    {
        let b = cc.state_mut();
        // What the loss did meanwhile: a cut and DOWN.
        b.inflight_longterm = 30 * MSS64;
        b.state = State::ProbeBwDown;
        b.undo_state = Some(State::ProbeBwUp);
    }
    tp.snd_cwnd = 60 * MSS; // the stack puts cwnd back first
    cc.on_cong_signal(&mut tp, CC_RTO_ERR);
    let b = cc.state();
    assert_eq!(b.inflight_longterm, INF);
    assert_eq!(b.state, State::ProbeBwRefill);
    assert_eq!(b.rto_recover, None);
    assert_eq!(tp.snd_cwnd, 60 * MSS);
    assert_eq!(cc.counter(counter::RTO_UNDOS), 1);
}

/// Fast recovery: cong_signal(CC_NDUPACK) enters recovery without a cut (ssthresh = cwnd);
/// the first round is packet conservation (cwnd = in flight + delivered); after it cwnd
/// grows; post_recovery restores the cwnd from before (with recovery_conservation = 1; the
/// default 0 is the draft's and Linux's plain model-driven recovery).
#[test]
fn fast_recovery_conserves_then_restores() {
    let now = 100 * SEC;
    let mut tp = tcpcb();
    let (mut cc, mut pacing) = conn_with(&[(param::RECOVERY_CONSERVATION, 1)], &mut tp, now);
    // Startup with a known RTT and bandwidth.
    let mut rs = sample(now + MS, 40 * MSS64, 0, 40 * MSS64);
    rs.prior_delivered = 0;
    rs.tot_delivered = 100 * MSS64;
    tp.snd_cwnd = 40 * MSS;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    let cwnd0 = tp.snd_cwnd;
    tp.snd_max = tp.snd_una.wrapping_add(cwnd0);
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    assert!(tp.in_fastrecovery() && tp.in_congrecovery());
    assert_eq!(tp.snd_ssthresh, cwnd0);
    assert_eq!(tp.snd_cwnd, cwnd0, "no cut on entering recovery");
    assert_eq!(cc.state().prior_cwnd, cwnd0 as u64);
    assert_eq!(cc.counter(counter::RECOVERIES), 1);
    // A repeat within the episode changes nothing.
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(cc.counter(counter::RECOVERIES), 1);

    // The ACK that triggered recovery: 3 segments lost, 1 delivered, 30 in flight.
    let mut r1 = sample(now + 2 * MS, 40 * MSS64, 3 * MSS64, 30 * MSS64);
    r1.prior_delivered = 50 * MSS64;
    r1.tot_delivered = 101 * MSS64;
    r1.newly_lost = 3 * MSS;
    ack(&mut cc, &mut tp, &mut pacing, &r1);
    assert_eq!(tp.snd_cwnd, 31 * MSS, "in flight + delivered");
    // Within the first round: what is marked lost leaves cwnd, which still follows what
    // is delivered (in flight + delivered at least).
    let mut r2 = sample(now + 3 * MS, 40 * MSS64, 4 * MSS64, 28 * MSS64);
    r2.prior_delivered = 51 * MSS64;
    r2.tot_delivered = 102 * MSS64;
    r2.newly_lost = MSS;
    ack(&mut cc, &mut tp, &mut pacing, &r2);
    assert_eq!(tp.snd_cwnd, 30 * MSS);
    let mut r2b = sample(now + 4 * MS, 40 * MSS64, 4 * MSS64, 29 * MSS64);
    r2b.prior_delivered = 52 * MSS64;
    r2b.tot_delivered = 103 * MSS64;
    r2b.newly_acked = 2 * MSS;
    ack(&mut cc, &mut tp, &mut pacing, &r2b);
    assert_eq!(tp.snd_cwnd, 31 * MSS, "in flight + delivered");
    assert!(cc.state().conservation);
    // A sample of data sent in recovery: conservation is over, cwnd grows again.
    let mut r3 = sample(now + 50 * MS, 30 * MSS64, 0, 29 * MSS64);
    r3.prior_delivered = 101 * MSS64;
    r3.tot_delivered = 104 * MSS64;
    ack(&mut cc, &mut tp, &mut pacing, &r3);
    assert!(!cc.state().conservation);
    assert_eq!(tp.snd_cwnd, 32 * MSS);
    // The end of recovery: cwnd from before.
    let (end, pipe) = (tp.snd_max, 10 * MSS);
    cc.on_post_recovery(&mut tp, end, pipe);
    assert!(!tp.in_recovery());
    assert_eq!(tp.snd_cwnd, cwnd0);

    // Without conservation: the model alone (Startup keeps growing cwnd).
    let mut tp = tcpcb();
    let (mut cc, mut pacing) = conn_with(&[(param::RECOVERY_CONSERVATION, 0)], &mut tp, now);
    tp.snd_cwnd = 40 * MSS;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    let cwnd0 = tp.snd_cwnd;
    cc.on_cong_signal(&mut tp, CC_NDUPACK);
    ack(&mut cc, &mut tp, &mut pacing, &r1);
    assert_eq!(tp.snd_cwnd, cwnd0 + MSS);
}

/// ECE alone (CC_ECN) enters congestion recovery for the stack's bookkeeping and cuts
/// nothing; ack_received and after_idle leave cwnd alone.
#[test]
fn ecn_signal_ack_received_and_idle_keep_cwnd() {
    let now = 100 * SEC;
    let (mut cc, mut tp, _) = steady(&[], State::ProbeBwCruise, now);
    let cwnd = tp.snd_cwnd;
    let ssthresh = tp.snd_ssthresh;
    cc.cong_signal(&mut tp, CC_ECN);
    assert!(tp.in_congrecovery() && !tp.in_fastrecovery());
    assert_eq!((tp.snd_cwnd, tp.snd_ssthresh), (cwnd, ssthresh));
    cc.ccv.bytes_this_ack = 10 * MSS;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, cwnd);
    tp.t_rcvtime = now + SEC;
    cc.after_idle(&mut tp);
    assert_eq!(tp.snd_cwnd, cwnd);
    assert!(cc.state().idle_restart);
}

/// Restarting from idle in ProbeBW paces at exactly bw; an idle restart does not enter
/// ProbeRTT on its first ACK even when the ProbeRTT interval has expired (the idle period
/// refreshes probe_rtt_min_delay instead).
#[test]
fn idle_restart_paces_at_bw_and_skips_probe_rtt() {
    let now = 100 * SEC;
    let (mut cc, mut tp, mut pacing) = steady(&[], State::ProbeBwUp, now);
    // The last app-limited data is acknowledged: nothing in flight.
    let mut rs = sample(now + MS, 10 * MSS64, 0, 0);
    rs.is_app_limited = true;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    assert!(cc.state().idle_restart);
    assert_eq!(
        cc.state().pacing_rate,
        RATE * 990 / 1000,
        "bw, not 1.25 * bw"
    );
    assert_eq!(pacing.pacing_rate, wire(RATE * 990 / 1000));
    // Six seconds later the first ACK of the new flight: ProbeRTT due, but not entered;
    // its RTT sample starts a new ProbeRTT interval.
    let mut rs = sample(now + 6 * SEC, 2 * MSS64, 0, MSS64);
    rs.is_app_limited = true;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    let b = cc.state();
    assert_ne!(b.state, State::ProbeRtt);
    assert_eq!(b.probe_rtt_min_stamp, now + 6 * SEC);
    assert!(!b.idle_restart);
    assert_eq!(cc.counter(counter::PROBE_RTT_ENTRIES), 0);
}

/// ProbeRTT's low-rate samples count as app-limited (MarkConnectionAppLimited): rounds of
/// them in Startup do not look like a bandwidth plateau.
#[test]
fn probe_rtt_samples_count_as_app_limited() {
    let now = 100 * SEC;
    let (mut cc, mut tp, mut pacing) = steady(&[], State::Startup, now);
    {
        let b = cc.state_mut();
        b.full_bw_reached = false;
        b.full_bw = RATE;
        b.probe_rtt_min_stamp = now - 6 * SEC;
    }
    let t1 = 10_000_000 + BDP;
    // The ACK that enters ProbeRTT (no round start).
    ack(
        &mut cc,
        &mut tp,
        &mut pacing,
        &sample(now + MS, 40 * MSS64, 0, 20 * MSS64),
    );
    assert_eq!(cc.state().state, State::ProbeRtt);
    assert_eq!(cc.counter(counter::PROBE_RTT_ENTRIES), 1);
    assert_eq!(
        cc.state().probe_rtt_app_limited,
        Some((t1, t1 + 20 * MSS64))
    );
    // Three rounds of half-rate samples of data sent in ProbeRTT.
    for i in 0..3 {
        let mut rs = sample(now + (2 + i) * MS, 10 * MSS64, 0, 10 * MSS64);
        rs.delivery_rate = RATE / 2;
        rs.prior_delivered = t1 + i * MSS64;
        rs.tot_delivered = t1 + (i + 1) * MSS64;
        ack(&mut cc, &mut tp, &mut pacing, &rs);
        assert!(cc.state().round_start);
    }
    let b = cc.state();
    assert_eq!((b.full_bw_count, b.full_bw_reached), (0, false));
    // The same samples of data sent before ProbeRTT would have counted.
    let (mut cc, mut tp, mut pacing) = steady(&[], State::Startup, now);
    cc.state_mut().full_bw_reached = false;
    cc.state_mut().full_bw = RATE;
    cc.state_mut().next_round_delivered = 0;
    let mut rs = sample(now + MS, 10 * MSS64, 0, 10 * MSS64);
    rs.delivery_rate = RATE / 2;
    ack(&mut cc, &mut tp, &mut pacing, &rs);
    assert_eq!(cc.state().full_bw_count, 1);
}

/// after_idle during ProbeRTT: once the ProbeRTT time is up (the idle period counts), the
/// cwnd from before comes back and ProbeBW resumes in CRUISE.
#[test]
fn after_idle_ends_probe_rtt_when_due() {
    let now = 100 * SEC;
    let (mut cc, mut tp, _) = steady(&[], State::ProbeRtt, now);
    {
        let b = cc.state_mut();
        b.prior_cwnd = 80 * MSS64;
        b.probe_rtt_done_stamp = now + 100 * MS;
    }
    tp.snd_cwnd = 4 * MSS;
    // Idle since `now`, RTO 1 s: at least now + 1 s.
    tp.t_rcvtime = now;
    tp.t_rxtcur = 1_000_000;
    cc.after_idle(&mut tp);
    let b = cc.state();
    assert_eq!(b.state, State::ProbeBwCruise);
    assert_eq!(tp.snd_cwnd, 80 * MSS);
    assert_eq!(b.probe_rtt_min_stamp, now + SEC);
    assert!(b.idle_restart);
    // Not yet due: ProbeRTT stays.
    let (mut cc, mut tp, _) = steady(&[], State::ProbeRtt, now);
    cc.state_mut().probe_rtt_done_stamp = now + 5 * SEC;
    tp.t_rcvtime = now;
    cc.after_idle(&mut tp);
    assert_eq!(cc.state().state, State::ProbeRtt);
}

// --------------------------------------------------------------- the module's surface

#[test]
fn descriptor_params_and_counters() {
    let algo = testing::algo::<Bbr>();
    assert_eq!(algo.name().as_str(), "bbr");
    assert_eq!(algo.features(), Some(cc_feature::RATE_SAMPLE));
    assert!(cc_algo().cong_control().flatten().is_some());
    let table = testing::param_table::<Bbr>();
    let want: &[(&str, i64)] = &[
        ("startup_pacing_gain", 2770),
        ("startup_cwnd_gain", 2000),
        ("drain_pacing_gain", 350),
        ("cwnd_gain", 2000),
        ("probe_up_cwnd_gain", 2250),
        ("probe_down_pacing_gain", 900),
        ("probe_up_pacing_gain", 1250),
        ("probe_rtt_cwnd_gain", 500),
        ("probe_rtt_interval_ms", 5000),
        ("probe_rtt_duration_ms", 200),
        ("min_rtt_filter_len_ms", 10_000),
        ("loss_thresh", 20),
        ("beta", 700),
        ("headroom", 150),
        ("full_bw_thresh", 250),
        ("full_bw_cnt", 3),
        ("full_loss_cnt", 6),
        ("ecn_enable", 1),
        ("ecn_thresh", 500),
        ("ecn_factor", 333),
        ("full_ecn_cnt", 2),
        ("ecn_max_rtt_us", 0),
        ("extra_acked_win_rounds", 10),
        ("pacing_margin", 10),
        ("recovery_conservation", 0),
        ("bw_probe_max_rounds", 63),
        ("bw_probe_base_ms", 2000),
        ("bw_probe_rand_ms", 1000),
        ("shortterm_loss_thresh", 0),
    ];
    let got: Vec<_> = table.iter().map(|&(n, d, _, _)| (n, d)).collect();
    assert_eq!(got, want);
    for (n, d, lo, hi) in table {
        assert!(lo <= d && d <= hi, "{n}");
    }
    let names: Vec<_> = algo.counters().iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "startup_exits",
            "startup_loss_exits",
            "startup_ecn_exits",
            "probe_bw_refills",
            "probe_rtt_entries",
            "inflight_too_high",
            "loss_responses",
            "ecn_responses",
            "recoveries",
            "rtos",
            "rto_undos"
        ]
    );
    // The ProbeRTT interval stays within the min_rtt window.
    let g = testing::globals();
    let values = testing::param_defaults::<Bbr>();
    let einval = plugtcp_abi::HookStatus(Errno::EINVAL.0);
    assert_eq!(
        testing::sysctl::<Bbr>(g, &values, param::PROBE_RTT_INTERVAL_MS, 10_001),
        einval
    );
    assert!(testing::sysctl::<Bbr>(g, &values, param::PROBE_RTT_INTERVAL_MS, 10_000).is_ok());
    assert_eq!(
        testing::sysctl::<Bbr>(g, &values, param::MIN_RTT_FILTER_LEN_MS, 9_999),
        einval
    );
    assert!(testing::sysctl::<Bbr>(g, &values, param::MIN_RTT_FILTER_LEN_MS, 20_000).is_ok());
    assert_eq!(
        testing::sysctl::<Bbr>(g, &values, param::HEADROOM, 1000),
        einval
    );
    let mut tp = tcpcb();
    let (mut cc, _) = conn_with(&[], &mut tp, SEC);
    cc.assert_cb_destroy_frees_state();
}

#[test]
fn windowed_max_filter() {
    let mut f = WindowedMax::default();
    assert_eq!(f.update(10, 0, 5), 5);
    assert_eq!(f.update(10, 1, 3), 5);
    assert_eq!(f.update(10, 5, 4), 5);
    // The 5 of time 0 leaves the window at 11; the best left is 4, then 3's was replaced.
    assert_eq!(f.update(10, 11, 1), 4);
    assert_eq!(f.update(10, 16, 1), 1);
    assert_eq!(f.update(10, 17, 9), 9);
    assert_eq!(f.update(1, 18, 2), 9);
    assert_eq!(f.update(1, 19, 2), 2);
}

// ------------------------------------------------------------------------- robustness

fn any_rs() -> impl Strategy<Value = RateSample> {
    (
        (
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        ),
    )
        .prop_map(|(a, b, c)| RateSample {
            now_ns: a.0,
            flags: a.1,
            delivery_rate: a.2,
            interval_us: a.3,
            delivered: a.4,
            delivered_ce: a.5,
            prior_delivered: b.0,
            tx_in_flight: b.1,
            lost: b.2,
            newly_acked: b.3,
            newly_lost: b.4,
            rtt_us: b.5,
            prior_in_flight: c.0,
            in_flight: c.1,
            is_app_limited: c.2,
            tot_delivered: c.3,
            tot_lost: c.4,
            tot_delivered_ce: c.5,
        })
}

/// Small values, so that the state machine moves (rounds start, losses count).
fn small_rs() -> impl Strategy<Value = RateSample> {
    (
        0u64..100_000_000_000,
        0u32..64,
        0u64..10_000_000_000,
        (0u64..1_000_000, 0u64..10_000_000, 0u64..10_000_000),
        (
            0u32..10_000_000,
            0u32..1_000_000,
            0u32..100_000,
            0u32..100_000,
            0u32..1_000_000,
        ),
        (
            0u32..10_000_000,
            0u32..10_000_000,
            any::<bool>(),
            0u64..100_000_000,
        ),
    )
        .prop_map(|(now, flags, rate, a, b, c)| RateSample {
            now_ns: now,
            flags,
            delivery_rate: rate,
            interval_us: a.0,
            delivered: a.1,
            delivered_ce: a.2,
            prior_delivered: c.3.saturating_sub(a.1),
            tx_in_flight: b.0,
            lost: b.1,
            newly_acked: b.2,
            newly_lost: b.3,
            rtt_us: b.4,
            prior_in_flight: c.0,
            in_flight: c.1,
            is_app_limited: c.2,
            tot_delivered: c.3,
            tot_lost: 0,
            tot_delivered_ce: a.2,
        })
}

#[derive(Clone, Debug)]
enum Op {
    Sample(RateSample),
    Signal(u32),
    PostRecovery(u32),
    Idle(u64),
    Cwnd(u32),
    Una(u32),
}

fn any_op(rs: BoxedStrategy<RateSample>) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => rs.prop_map(Op::Sample),
        1 => prop_oneof![
            Just(CC_NDUPACK),
            Just(CC_ECN),
            Just(CC_RTO),
            Just(CC_RTO_ERR),
            any::<u32>()
        ]
        .prop_map(Op::Signal),
        1 => any::<u32>().prop_map(Op::PostRecovery),
        1 => any::<u64>().prop_map(Op::Idle),
        1 => any::<u32>().prop_map(Op::Cwnd),
        1 => any::<u32>().prop_map(Op::Una),
    ]
}

fn run_ops(overrides: &[(usize, i64)], maxseg: u32, flags: (u32, u32), srtt: u32, ops: &[Op]) {
    let mut tp = tcpcb();
    tp.t_maxseg = maxseg;
    tp.t_flags |= flags.0 & (tf::REQ_TSTMP | tf::RCVD_TSTMP);
    tp.t_flags2 |= flags.1 & (tf2::ECN_PERMIT | tf2::INET6);
    tp.t_srtt = srtt;
    let (mut cc, mut pacing) = conn_with(overrides, &mut tp, 0);
    for op in ops {
        match op {
            Op::Sample(rs) => cc.cong_control(hook(), &mut tp, rs, &mut pacing),
            Op::Signal(sig) => cc.on_cong_signal(&mut tp, *sig),
            Op::PostRecovery(pipe) => {
                let una = tp.snd_una;
                cc.on_post_recovery(&mut tp, una, *pipe)
            }
            Op::Idle(t) => {
                tp.t_rcvtime = *t;
                cc.after_idle(&mut tp)
            }
            Op::Cwnd(c) => tp.snd_cwnd = *c,
            Op::Una(d) => {
                tp.snd_una = tp.snd_una.wrapping_add(*d);
                tp.snd_max = tp.snd_max.wrapping_add(d.wrapping_mul(2));
            }
        }
        assert!(!cc.faulted, "a hook panicked at {op:?}");
        if let Op::Sample(rs) = op {
            if rs.flags & rs_flags::INIT == 0 {
                assert!(
                    tp.snd_cwnd >= 1 && tp.snd_cwnd as u64 <= CWND_MAX,
                    "{}",
                    tp.snd_cwnd
                );
            }
        }
    }
}

fn any_overrides() -> impl Strategy<Value = Vec<(usize, i64)>> {
    proptest::collection::vec((0usize..Bbr::PARAMS.len(), any::<i64>()), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No hook panics on any input: wild samples, signals, parameters (even outside their
    /// ranges), segment sizes.
    #[test]
    fn hooks_never_panic(
        overrides in any_overrides(),
        maxseg in prop_oneof![Just(0u32), Just(1u32), Just(13u32), 1u32..65_535, any::<u32>()],
        flags in (any::<u32>(), any::<u32>()),
        srtt in any::<u32>(),
        ops in proptest::collection::vec(any_op(any_rs().boxed()), 1..60),
    ) {
        run_ops(&overrides, maxseg, flags, srtt, &ops);
    }

    /// The same with plausible magnitudes, so that the state machine runs through its
    /// states; cwnd always stays within [1 segment, CWND_MAX] after an ACK.
    #[test]
    fn hooks_never_panic_in_plausible_runs(
        overrides in any_overrides(),
        ops in proptest::collection::vec(any_op(small_rs().boxed()), 1..400),
    ) {
        run_ops(&overrides, MSS, (0, tf2::ECN_PERMIT), 0, &ops);
    }
}
