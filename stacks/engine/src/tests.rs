//! The engine's own unit tests: one connection on a block built from it, driven through
//! the block's ABI descriptor by the fake host of `plugtcp_tcpkit::stack::testing`, with
//! every segment it sends checked field by field where the RFCs fix them.
//!
//! The connections have no CC module attached (cwnd stays at the initial window the engine
//! sets, RFC 6928's 10 segments), and use FreeBSD's default tunables: delayed ACKs of 40 ms,
//! `rexmit_min` 30 ms and `rexmit_slop` 200 ms, RFC 5961 on.

use plugtcp_abi::segment::th;
use plugtcp_abi::stack::{tt, ConnEvent};
use plugtcp_abi::tcpcb::{tf, tf2};
use plugtcp_abi::{Errno, TcpState};
use plugtcp_tcpkit::stack::testing::{Handshake, PeerSeg, TestConn, MS};

use crate::{LossDetection, Personality, Stack};

/// A block of the engine with RFC 6675 loss recovery, as `base`.
struct Plain;

impl Personality for Plain {
    const NAME: &'static str = "engine-test";
    const LOSS: LossDetection = LossDetection::Rfc6675;
    fn handoff_ok(_cx: &plugtcp_abi::stack::StackCtx) -> Result<(), Errno> {
        Ok(())
    }
}

/// The same engine with RACK-TLP, as `rack`: a switch target.
struct Racky;

impl Personality for Racky {
    const NAME: &'static str = "engine-test-rack";
    const LOSS: LossDetection = LossDetection::RackTlp;
    fn handoff_ok(_cx: &plugtcp_abi::stack::StackCtx) -> Result<(), Errno> {
        Ok(())
    }
}

type Eng = Stack<Plain>;
type EngRack = Stack<Racky>;

const ISS: u32 = 1000;
const IRS: u32 = 5000;

/// An active open with the default handshake: ISS 1000, IRS 5000, the peer offering a
/// window of 65535 and an MSS of 1460 and nothing else, 10 ms round trip.
fn established() -> TestConn {
    established_with(&Handshake::default())
}

fn established_with(hs: &Handshake) -> TestConn {
    let mut c = TestConn::of::<Eng>();
    c.active_open(hs);
    c
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn handshake_from_syn_sent() {
    let mut c = TestConn::of::<Eng>();
    c.connect(ISS).unwrap();
    // Our SYN (RFC 9293 3.5): ISS, no ACK, the options rfc1323=1 and sack.enable ask for.
    let syn = c.take_one();
    assert_eq!(syn.key(), (ISS, 0, th::SYN, 0), "{syn:?}");
    assert_eq!(syn.win(), 65535);
    let o = syn.seg.opts;
    assert_eq!((o.mss, o.wscale), (1460, 6));
    assert!(o.has(plugtcp_abi::segment::to::SACKPERM) && o.has(plugtcp_abi::segment::to::TSTAMP));
    assert_eq!(c.state(), TcpState::SynSent);
    // RFC 6298 2.1: 1 s before any RTT sample; the connection-establishment timer too.
    assert_eq!(c.timer(tt::REXMT), Some(1000 * MS));
    assert_eq!(c.timer(tt::KEEP), Some(75_000 * MS));

    // The SYN-ACK, 10 ms later, without options: ESTABLISHED, and <SEQ=SND.NXT>
    // <ACK=RCV.NXT><CTL=ACK> (RFC 9293 3.10.7.3).
    c.advance(10 * MS);
    c.input(&PeerSeg::syn_ack(IRS, ISS + 1).mss(1460));
    assert_eq!(c.state(), TcpState::Established);
    let ack = c.take_one();
    assert_eq!(ack.key(), (ISS + 1, IRS + 1, th::ACK, 0), "{ack:?}");
    assert_eq!(ack.win(), 65535);
    assert!(c.events().contains(&ConnEvent::Connected));
    let tp = c.tp();
    assert_eq!((tp.irs, tp.snd_una, tp.rcv_nxt), (IRS, ISS + 1, IRS + 1));
    // The peer offered neither scaling nor timestamps: neither is in use.
    assert_eq!(tp.t_flags & (tf::REQ_SCALE | tf::REQ_TSTMP), 0);
    assert_eq!((tp.snd_wnd, tp.t_maxseg), (65535, 1460));
    // The SYN was timed (RFC 6298 2.2): SRTT = R, RTTVAR = R/2.
    assert_eq!((tp.t_srtt, tp.t_rttvar), (10_000, 5_000));
    // RFC 6928: the initial window is 10 segments.
    assert_eq!(tp.snd_cwnd, 10 * 1460);
    assert_eq!(c.timer(tt::REXMT), None, "nothing outstanding");
    assert_eq!(c.timer(tt::KEEP), Some(7_200_000 * MS), "keepalive now");
}

#[test]
fn syn_sent_answers_an_unacceptable_ack_with_a_reset() {
    let mut c = TestConn::of::<Eng>();
    c.connect(ISS).unwrap();
    c.take_sent();
    // RFC 9293 3.10.7.3: SEG.ACK =< ISS or > SND.NXT draws <SEQ=SEG.ACK><CTL=RST>.
    c.input(&PeerSeg::syn_ack(IRS, ISS + 7));
    assert_eq!(c.take_one().key(), (ISS + 7, 0, th::RST, 0));
    assert_eq!(c.state(), TcpState::SynSent);
    // A RST whose ACK is not acceptable is dropped, silently.
    c.input(&PeerSeg::rst(IRS).with(th::ACK));
    assert_eq!(c.state(), TcpState::SynSent);
    assert!(c.sent().is_empty());
    // One acknowledging our SYN: connection refused, CLOSED.
    let mut rst = PeerSeg::rst(IRS).with(th::ACK);
    rst.ack = ISS + 1;
    c.input(&rst);
    assert!(c.is_closed());
    assert_eq!(c.tp().t_softerror, Errno::ECONNREFUSED.0);
    assert!(c.sent().is_empty());
}

#[test]
fn syn_is_retransmitted_with_backoff() {
    let mut c = TestConn::of::<Eng>();
    c.connect(ISS).unwrap();
    c.take_sent();
    assert_eq!(c.fire(tt::REXMT), [tt::REXMT]);
    assert_eq!(c.now(), 1000 * MS);
    assert_eq!(c.take_one().key(), (ISS, 0, th::SYN, 0));
    // FreeBSD's TCPT_RANGESET(rexmit_initial * tcp_backoff[1]): 2 s plus the 200 ms slop.
    assert_eq!(c.timer(tt::REXMT), Some(2200 * MS));
    assert_eq!(c.tp().t_rxtshift, 1);
}

#[test]
fn in_order_data_is_stored_and_acknowledged_after_the_delayed_ack_time() {
    let mut c = established();
    let data = bytes(100);
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1).data(&data));
    assert_eq!(c.rcv_readable(), data.as_slice());
    assert_eq!(c.tp().rcv_nxt, IRS + 101);
    assert!(c.events().contains(&ConnEvent::Readable));
    // RFC 9293 3.8.6.3: one segment's ACK may wait (FreeBSD's delacktime, 40 ms).
    assert!(c.sent().is_empty(), "{:?}", c.sent());
    assert_eq!(c.timer(tt::DELACK), Some(40 * MS));
    c.fire(tt::DELACK);
    let ack = c.take_one();
    assert_eq!(ack.key(), (ISS + 1, IRS + 101, th::ACK, 0));
    assert_eq!(u32::from(ack.win()), c.rcv_space().min(65535));
    assert_eq!(ack.at_ns, 50 * MS);
}

#[test]
fn every_second_full_segment_is_acknowledged_at_once() {
    let mut c = established();
    let data = bytes(2 * 1460);
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1).data(&data[..1460]));
    assert!(c.sent().is_empty());
    // RFC 5681 4.2: an ACK for at least every second full-sized segment.
    c.input(&PeerSeg::ack(IRS + 1 + 1460, ISS + 1).data(&data[1460..]));
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 1 + 2920, th::ACK, 0));
    assert_eq!(c.timer(tt::DELACK), None, "the delayed ACK went with it");
    assert_eq!(c.rcv_readable(), data.as_slice());
}

#[test]
fn without_delayed_acks_data_is_acknowledged_at_once() {
    let mut c = established();
    c.tunables_mut().delayed_ack = 0;
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1).data(b"ping"));
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 5, th::ACK, 0));
}

#[test]
fn out_of_order_data_draws_a_duplicate_ack_and_the_gap_filled_an_ack() {
    let mut c = established();
    let data = bytes(200);
    // RFC 5681 4.2: an out-of-order segment, an immediate duplicate ACK.
    c.input(&PeerSeg::ack(IRS + 101, ISS + 1).data(&data[100..]));
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 1, th::ACK, 0));
    assert_eq!(
        c.rcv_readable(),
        b"",
        "not readable before the gap is filled"
    );
    // The segment that fills the gap: acknowledged at once, up to the end of both.
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1).data(&data[..100]));
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 201, th::ACK, 0));
    assert_eq!(c.rcv_readable(), data.as_slice());
    assert_eq!(c.tp().t_rcvoopack, 1);
}

#[test]
fn data_out_respects_the_peer_window_and_mss() {
    // The peer offers a 3000-byte window and an MSS of 1000.
    let hs = Handshake {
        peer_win: 3000,
        peer_mss: Some(1000),
        ..Handshake::default()
    };
    let mut c = established_with(&hs);
    assert_eq!((c.tp().t_maxseg, c.tp().snd_wnd), (1000, 3000));
    let data = bytes(5000);
    assert_eq!(c.send(&data), Ok(5000));
    // Three full segments fill the window (RFC 9293 3.8.6: nothing beyond SND.UNA +
    // SND.WND; 3.7.1: none above the MSS). No PSH: none empties the buffer.
    let s = c.take_sent();
    let keys: Vec<_> = s.iter().map(|s| s.key()).collect();
    assert_eq!(
        keys,
        [
            (ISS + 1, IRS + 1, th::ACK, 1000),
            (ISS + 1001, IRS + 1, th::ACK, 1000),
            (ISS + 2001, IRS + 1, th::ACK, 1000),
        ]
    );
    assert_eq!(s[1].payload, &data[1000..2000]);
    // The first acknowledged, the window still 3000 (its right edge at ISS + 4001): one
    // more segment fits.
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1001).win(3000));
    assert_eq!(c.take_one().key(), (ISS + 3001, IRS + 1, th::ACK, 1000));
    assert_eq!(
        c.snd_len(),
        4000,
        "acknowledged bytes dropped from the send buffer"
    );
    // Two more acknowledged: the last 1000 bytes go, with PSH, and nothing else is sent
    // although the window would take 2000 bytes.
    c.input(&PeerSeg::ack(IRS + 1, ISS + 3001).win(3000));
    let last = c.take_one();
    assert_eq!(last.key(), (ISS + 4001, IRS + 1, th::ACK | th::PUSH, 1000));
    assert_eq!(last.payload, &data[4000..]);
    c.input(&PeerSeg::ack(IRS + 1, ISS + 5001).win(500));
    assert!(c.sent().is_empty());
    assert_eq!(c.tp().snd_una, c.tp().snd_max);
}

#[test]
fn retransmission_timeout_resends_snd_una_and_backs_off() {
    let mut c = established();
    let data = bytes(1000);
    c.send(&data).unwrap();
    let first = c.take_one();
    assert_eq!(first.key(), (ISS + 1, IRS + 1, th::ACK | th::PUSH, 1000));
    // RFC 6298 2.3 with FreeBSD's constants: SRTT 10 ms and RTTVAR 5 ms from the
    // handshake, max(rexmit_min 30, 10 + 4 * 5) + slop 200 = 230 ms.
    assert_eq!(c.timer(tt::REXMT), Some(230 * MS));
    c.advance(229 * MS);
    assert!(c.sent().is_empty());
    c.fire(tt::REXMT);
    // RFC 6298 5.4: the earliest unacknowledged segment again, byte for byte.
    let again = c.take_one();
    assert_eq!(again.key(), first.key());
    assert_eq!(again.payload, first.payload);
    // 5.5 and 5.6: backed off and restarted: FreeBSD's TCPT_RANGESET(30 * 2) + 200.
    assert_eq!(c.timer(tt::REXMT), Some(260 * MS));
    assert_eq!(c.tp().t_rxtshift, 1);
    assert_eq!(c.tp().t_sndrexmitpack, 1);
    assert_eq!(
        (c.counter("rexmttimeo"), c.counter("sndrexmitpack")),
        (1, 1)
    );
    // A second timeout: the same segment, the timer doubled again.
    c.fire(tt::REXMT);
    assert_eq!(c.take_one().key(), first.key());
    assert_eq!(c.timer(tt::REXMT), Some(320 * MS));
    // The ACK ends it: the timer stops, the buffer empties.
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1001));
    assert_eq!(c.timer(tt::REXMT), None);
    assert_eq!(c.snd_len(), 0);
}

#[test]
fn fin_moves_established_to_close_wait_and_close_to_last_ack() {
    let mut c = established();
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1).data(b"bye").fin());
    // RFC 9293 3.10.7.4, eighth: RCV.NXT over the FIN, acknowledged at once, CLOSE_WAIT.
    assert_eq!(c.state(), TcpState::CloseWait);
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 5, th::ACK, 0));
    assert!(c.tp().t_flags2 & tf2::FIN_RCVD != 0);
    assert_eq!(c.rcv_readable(), b"bye");
    assert!(c.events().contains(&ConnEvent::Readable));
    // A retransmitted FIN is acknowledged again.
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1).data(b"bye").fin());
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 5, th::ACK, 0));
    assert_eq!(c.state(), TcpState::CloseWait);
    // close(2): LAST_ACK, and our FIN.
    c.close();
    assert_eq!(c.state(), TcpState::LastAck);
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 5, th::FIN | th::ACK, 0));
    assert!(c.timer(tt::REXMT).is_some());
    // Its ACK: CLOSED.
    c.input(&PeerSeg::ack(IRS + 5, ISS + 2));
    assert_eq!(c.state(), TcpState::Closed);
    assert!(c.is_closed());
    assert!(c.events().contains(&ConnEvent::Closed));
    assert!(c.sent().is_empty());
}

#[test]
fn active_close_goes_through_fin_wait_and_time_wait() {
    let mut c = established();
    c.close();
    assert_eq!(c.state(), TcpState::FinWait1);
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 1, th::FIN | th::ACK, 0));
    c.input(&PeerSeg::ack(IRS + 1, ISS + 2));
    assert_eq!(c.state(), TcpState::FinWait2);
    c.input(&PeerSeg::ack(IRS + 1, ISS + 2).fin());
    assert_eq!(c.state(), TcpState::TimeWait);
    assert_eq!(c.take_one().key(), (ISS + 2, IRS + 2, th::ACK, 0));
    // 2 * MSL (30 s), then the stack ends the connection (the host never does by itself).
    assert_eq!(c.timer(tt::TWO_MSL), Some(60_000 * MS));
    c.fire(tt::TWO_MSL);
    assert!(c.is_closed());
}

#[test]
fn rst_at_rcv_nxt_drops_the_connection() {
    let mut c = established();
    c.send(b"pending").unwrap();
    c.take_sent();
    // RFC 5961 3.2: a RST exactly at RCV.NXT resets the connection.
    c.input(&PeerSeg::rst(IRS + 1));
    assert!(c.is_closed());
    assert_eq!(c.state(), TcpState::Closed);
    assert_eq!(c.tp().t_softerror, Errno::ECONNRESET.0);
    assert!(c.events().contains(&ConnEvent::Closed));
    assert!(c.sent().is_empty(), "no answer to a RST");
    assert!(c.armed().is_empty(), "every timer stopped: {:?}", c.armed());
    assert_eq!(c.send(b"x"), Err(Errno::ECONNRESET));
}

#[test]
fn rst_elsewhere_in_the_window_draws_a_challenge_ack() {
    let mut c = established();
    // RFC 5961 3.2: in the window but not at RCV.NXT: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
    c.input(&PeerSeg::rst(IRS + 1 + 1000));
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 1, th::ACK, 0));
    assert_eq!(c.state(), TcpState::Established);
    assert_eq!(c.counter("challenge_ack"), 1);
    // Outside the window: dropped without a word.
    c.input(&PeerSeg::rst(IRS + 1 + 100_000));
    assert!(c.sent().is_empty());
    assert_eq!(c.state(), TcpState::Established);
    // With net.inet.tcp.insecure_rst, anywhere in the window resets (RFC 9293 before 5961).
    c.tunables_mut().insecure_rst = 1;
    c.input(&PeerSeg::rst(IRS + 1 + 1000));
    assert!(c.is_closed());
    assert_eq!(c.tp().t_softerror, Errno::ECONNRESET.0);
}

#[test]
fn passive_open_completes_on_the_handshake_ack() {
    let c = TestConn::accepted::<Eng>(&Handshake::default());
    // The SYN cache made it in SYN_RECEIVED; the third segment of the handshake (RFC 9293
    // 3.10.7.4, fifth: SND.UNA < SEG.ACK =< SND.NXT) establishes it.
    assert_eq!(c.state(), TcpState::Established);
    assert_eq!(c.events(), [ConnEvent::Connected]);
    let tp = c.tp();
    assert_eq!((tp.snd_una, tp.snd_wnd), (ISS + 1, 65535));
    assert!(c.sent().is_empty(), "nothing to say to a bare ACK");
    assert_eq!(c.timer(tt::KEEP), Some(7_200_000 * MS));
}

#[test]
fn switched_in_with_data_in_flight_rearms_the_retransmit_timer() {
    let mut c = established();
    c.send(&bytes(3000)).unwrap();
    assert_eq!(c.take_sent().len(), 3);
    let rexmt = c.deadline(tt::REXMT).unwrap();
    c.advance(100 * MS);
    // make-before-break to the RACK personality: it takes the RTT estimate from the tcpcb
    // and arms the retransmit timer for what is outstanding; the switch keeps the sooner
    // deadline.
    c.switch_to_stack::<EngRack>().unwrap();
    assert_eq!(c.block().name(), "engine-test-rack");
    assert_eq!(c.deadline(tt::REXMT), Some(rexmt));
    assert_eq!(c.stack_state::<EngRack>().engine().rtt.srtt(), 10_000);
    // It retransmits from snd_una on that timer.
    c.fire(tt::REXMT);
    let s = c.take_sent();
    assert_eq!(s[0].key(), (ISS + 1, IRS + 1, th::ACK, 1460));
    // And takes the ACKs: everything acknowledged, the timer stops.
    c.input(&PeerSeg::ack(IRS + 1, ISS + 3001));
    assert_eq!(c.tp().snd_una, ISS + 3001);
    assert_eq!(c.timer(tt::REXMT), None);
}

#[test]
fn zero_window_is_probed_with_one_byte_on_the_persist_timer() {
    let hs = Handshake {
        peer_win: 0,
        ..Handshake::default()
    };
    let mut c = established_with(&hs);
    let data = bytes(100);
    c.send(&data).unwrap();
    // Nothing fits a closed window: the persist timer instead of the retransmit timer,
    // at its 5 s floor (persmin).
    assert!(c.sent().is_empty());
    assert_eq!(c.timer(tt::REXMT), None);
    assert_eq!(c.timer(tt::PERSIST), Some(5000 * MS));
    // RFC 9293 3.8.6.1: the probe is one byte, the first unacknowledged one.
    c.fire(tt::PERSIST);
    let probe = c.take_one();
    assert_eq!(probe.key(), (ISS + 1, IRS + 1, th::ACK, 1));
    assert_eq!(probe.payload, &data[..1]);
    assert!(c.timer(tt::PERSIST).is_some());
    assert_eq!(
        c.timer(tt::REXMT),
        None,
        "a probe runs under the persist timer alone"
    );
    assert_eq!(c.tp().t_persisttimeo, 1);
    // The window opens (the probe byte not taken): everything goes, from snd_una.
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1).win(65535));
    let s = c.take_one();
    assert_eq!(s.key(), (ISS + 1, IRS + 1, th::ACK | th::PUSH, 100));
    assert_eq!(c.timer(tt::PERSIST), None);
    assert!(c.timer(tt::REXMT).is_some());
}

/// cc.c's NewReno, for the tests that look at what the engine tells the CC.
struct Reno;

impl plugtcp_abi::cc::CcAlgorithm for Reno {
    const NAME: &'static str = "reno";
    fn cb_init(_ccv: &plugtcp_abi::cc::CcVar, _tp: &plugtcp_abi::Tcpcb) -> Result<Self, Errno> {
        Ok(Reno)
    }
    plugtcp_tcpkit::newreno_hooks!(ack_received, cong_signal, post_recovery, after_idle);
}

#[test]
fn retransmission_timeout_collapses_cwnd_through_the_cc() {
    let mut c = TestConn::of::<Eng>();
    c.attach_cc(plugtcp_abi::cc::CcVtable::<Reno>::ALGO)
        .unwrap();
    c.active_open(&Handshake::default());
    assert_eq!(c.tp().snd_cwnd, 10 * 1460, "conn_init's initial window");
    c.send(&bytes(10 * 1460)).unwrap();
    assert_eq!(
        c.take_sent().len(),
        10,
        "the initial window, in full segments"
    );
    c.fire(tt::REXMT);
    // RFC 5681 3.1: ssthresh = max(FlightSize / 2, 2 * SMSS), cwnd = LW = 1 SMSS; so one
    // segment, the first unacknowledged one, goes out.
    assert_eq!((c.tp().snd_ssthresh, c.tp().snd_cwnd), (5 * 1460, 1460));
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 1, th::ACK, 1460));
    // Its ACK, a round trip later: slow start, two more segments.
    c.advance(10 * MS);
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1 + 1460));
    assert_eq!(c.tp().snd_cwnd, 2 * 1460);
    let keys: Vec<_> = c.take_sent().iter().map(|s| s.key()).collect();
    assert_eq!(
        keys,
        [
            (ISS + 1461, IRS + 1, th::ACK, 1460),
            (ISS + 2921, IRS + 1, th::ACK, 1460)
        ]
    );
}

#[test]
fn a_receive_batch_is_acknowledged_once_at_its_end() {
    let mut c = established();
    let data = bytes(300);
    let segs: Vec<PeerSeg> = (0..3)
        .map(|i| PeerSeg::ack(IRS + 1 + 100 * i, ISS + 1).data(&data[100 * i as usize..][..100]))
        .collect();
    // HostIf::input_batch: the engine leaves its ACK to the host's output at the batch's end,
    // which acknowledges all three segments at once.
    c.input_batch(&segs);
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 301, th::ACK, 0));
    assert_eq!(c.rcv_readable(), data.as_slice());
    // Outside a batch the second segment's ACK goes at once, the third waits.
    let mut c = established();
    for s in &segs {
        c.input(s);
    }
    assert_eq!(c.take_one().key(), (ISS + 1, IRS + 201, th::ACK, 0));
    assert!(c.timer(tt::DELACK).is_some());
}

#[test]
fn smaller_path_mtu_resends_the_flight_in_smaller_segments() {
    let mut c = established();
    let data = bytes(2 * 1460);
    c.send(&data).unwrap();
    assert_eq!(c.take_sent().len(), 2);
    // ICMP "fragmentation needed", MTU 1280: the host lowers t_maxseg to 1240 and rewinds
    // snd_nxt (FreeBSD tcp_mtudisc); the stack resends from snd_una in 1240-byte segments.
    c.mtu_chg(1280);
    assert_eq!(c.tp().t_maxseg, 1240);
    let s = c.take_sent();
    let keys: Vec<_> = s.iter().map(|s| s.key()).collect();
    assert_eq!(
        keys,
        [
            (ISS + 1, IRS + 1, th::ACK, 1240),
            (ISS + 1241, IRS + 1, th::ACK, 1240),
            (ISS + 2481, IRS + 1, th::ACK | th::PUSH, 440),
        ]
    );
    assert_eq!(s[2].payload, &data[2480..]);
}

#[test]
fn an_ack_too_soon_for_the_retransmission_undoes_the_timeout() {
    let mut c = TestConn::of::<Eng>();
    c.attach_cc(plugtcp_abi::cc::CcVtable::<Reno>::ALGO)
        .unwrap();
    c.active_open(&Handshake::default());
    c.send(&bytes(10 * 1460)).unwrap();
    c.take_sent();
    let before = (c.tp().snd_ssthresh, c.tp().snd_cwnd);
    c.fire(tt::REXMT);
    c.take_sent();
    // Without timestamps, an ACK within half an RTT of the retransmission acknowledges the
    // original transmission (FreeBSD's t_badrxtwin): the timeout was spurious, cwnd and
    // ssthresh come back (CC_RTO_ERR) before the ACK grows cwnd.
    c.input(&PeerSeg::ack(IRS + 1, ISS + 1 + 1460));
    assert_eq!(c.tp().snd_ssthresh, before.0);
    assert_eq!(c.tp().snd_cwnd, before.1 + 1460);
    assert_eq!(c.counter("sndrexmitbad"), 1);
}
