//! NewReno against RFC 5681 / RFC 3465 / RFC 6582 arithmetic.

use super::*;
use plugtcp_abi::cc::{ccf, CcConn, CC_ACK};
use plugtcp_abi::sockopt::{SockOpt, SockOptDir, IPPROTO_TCP, TCP_CCALGOOPT};
use plugtcp_abi::tcpcb::tf;
use plugtcp_tcpkit::cc::testing::{self, globals, TestConn};
use std::sync::atomic::Ordering;

const MSS: u32 = 1460;

/// A connection on newreno (beta and beta_ecn at their defaults, 50 and 80) through its ABI
/// descriptor, as a host would drive it.
fn conn(g: &'static CcGlobals) -> (TestConn<NewReno>, Tcpcb) {
    let mut tp = testing::tcpcb(MSS, 10 * MSS, u32::MAX);
    let cc = TestConn::attach(g, testing::params::<NewReno>(&[]), &mut tp);
    (cc, tp)
}

fn ack(cc: &mut CcConn, tp: &mut Tcpcb, bytes: u32) {
    cc.ccv.bytes_this_ack = bytes;
    cc.ccv.flags |= ccf::CWND_LIMITED;
    cc.ack_received(tp, CC_ACK);
}

#[test]
fn slow_start_grows_by_bytes_acked_capped_at_l_smss() {
    let (mut cc, mut tp) = conn(globals());
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 11 * MSS);
    // RFC 3465: at most L * SMSS (L = abc_l_var = 2) per ACK.
    ack(&mut cc, &mut tp, 5 * MSS);
    assert_eq!(tp.snd_cwnd, 13 * MSS);
    // After an RTO (retransmitting: snd_nxt < snd_max) L is 1.
    tp.snd_max = 100_000;
    tp.snd_nxt = 50_000;
    ack(&mut cc, &mut tp, 5 * MSS);
    assert_eq!(tp.snd_cwnd, 14 * MSS);
}

#[test]
fn not_cwnd_limited_or_in_recovery_does_not_grow() {
    let (mut cc, mut tp) = conn(globals());
    cc.ccv.bytes_this_ack = MSS;
    cc.ccv.flags = 0;
    cc.ack_received(&mut tp, CC_ACK);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    tp.t_flags |= tf::FASTRECOVERY;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    tp.t_flags = 0;
    testing::assert_dupack_keeps_cwnd(&mut cc, &mut tp);
}

#[test]
fn congestion_avoidance_one_mss_per_window() {
    let (mut cc, mut tp) = conn(globals());
    tp.snd_ssthresh = 5 * MSS;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(
        tp.snd_cwnd,
        10 * MSS,
        "no growth until a cwnd's worth is acked"
    );
    cc.ccv.flags |= ccf::ABC_SENTAWND;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 11 * MSS);
    assert_eq!(cc.ccv.flags & ccf::ABC_SENTAWND, 0, "flag consumed");
}

#[test]
fn cwnd_capped_at_scaled_max_window() {
    let (mut cc, mut tp) = conn(globals());
    tp.snd_scale = 0;
    tp.snd_cwnd = 65000;
    ack(&mut cc, &mut tp, MSS);
    assert_eq!(tp.snd_cwnd, 65535);
}

#[test]
fn fast_retransmit_halves_and_enters_recovery() {
    let (mut cc, mut tp) = conn(globals());
    tp.snd_cwnd = 20 * MSS + 100;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    // ssthresh = max(cwnd * 50% / SMSS, 2) * SMSS, rounded down to whole segments.
    assert_eq!(tp.snd_ssthresh, 10 * MSS);
    assert!(tp.in_fastrecovery() && tp.in_congrecovery());
    // A second signal in the same recovery changes nothing.
    tp.snd_cwnd = 4 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 10 * MSS);
    // Small windows floor at 2 SMSS.
    let (mut cc, mut tp) = conn(globals());
    tp.snd_cwnd = 2 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 2 * MSS);
}

#[test]
fn rto_collapses_to_one_segment() {
    let (mut cc, mut tp) = conn(globals());
    tp.snd_cwnd = 30 * MSS;
    tp.snd_wnd = 16 * MSS;
    cc.cong_signal(&mut tp, CC_RTO);
    assert_eq!(tp.snd_cwnd, MSS);
    assert_eq!(tp.snd_ssthresh, 8 * MSS, "min(snd_wnd, cwnd) / 2");
}

#[test]
fn ecn_uses_beta_without_abe_and_beta_ecn_with_it() {
    let g = globals();
    let (mut cc, mut tp) = conn(g);
    testing::assert_newreno_ecn(&mut cc, &mut tp);

    g.abe.store(1, Ordering::Relaxed);
    let (mut cc, mut tp) = conn(g);
    tp.snd_cwnd = 20 * MSS;
    cc.cong_signal(&mut tp, CC_ECN);
    assert_eq!(tp.snd_cwnd, 16 * MSS, "beta_ecn 80%");
}

#[test]
fn post_recovery_rfc6582() {
    let (mut cc, mut tp) = conn(globals());
    tp.t_flags |= tf::FASTRECOVERY;
    tp.snd_ssthresh = 10 * MSS;
    tp.snd_max = 100 * MSS;
    // Much in flight: cwnd = ssthresh.
    cc.ccv.curack = 80 * MSS;
    cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 10 * MSS);
    // Little in flight: cwnd = max(pipe, SMSS) + SMSS, no burst.
    cc.ccv.curack = 97 * MSS;
    cc.ccv.pipe = tp.snd_max.wrapping_sub(cc.ccv.curack);
    cc.post_recovery(&mut tp);
    assert_eq!(tp.snd_cwnd, 4 * MSS);
}

#[test]
fn after_idle_restart_window() {
    let (mut cc, mut tp) = conn(globals());
    testing::assert_newreno_after_idle(&mut cc, &mut tp);
}

#[test]
fn initial_window_rfc6928() {
    assert_eq!(initial_window(1460, 10), 14600);
    assert_eq!(
        initial_window(9000, 10),
        18000,
        "2 * SMSS floor, 14600-byte cap otherwise"
    );
    assert_eq!(initial_window(536, 10), 5360);
    assert_eq!(initial_window(1460, 0), 4380);
}

fn ctl(
    cc: &mut CcConn,
    tp: &mut Tcpcb,
    dir: SockOptDir,
    name: u32,
    val: u32,
) -> (HookStatus, CcNewrenoOpts) {
    let mut buf = CcNewrenoOpts { name, val }.to_bytes();
    let mut opt = SockOpt {
        level: IPPROTO_TCP,
        name: TCP_CCALGOOPT,
        dir,
        val: (&mut buf[..]).into(),
        len: 8,
    };
    let st = (cc.hooks.ctl_output.unwrap())(&mut cc.ccv, tp, &mut opt);
    (st, CcNewrenoOpts::from_bytes(&buf).unwrap())
}

use plugtcp_abi::HookStatus;

#[test]
fn ccalgoopt_beta_and_beta_ecn() {
    let (mut cc, mut tp) = conn(globals());
    assert!(ctl(&mut cc, &mut tp, SockOptDir::Set, CC_NEWRENO_BETA, 70)
        .0
        .is_ok());
    let (st, got) = ctl(&mut cc, &mut tp, SockOptDir::Get, CC_NEWRENO_BETA, 0);
    assert!(st.is_ok());
    assert_eq!(got.val, 70);
    tp.snd_cwnd = 20 * MSS;
    cc.cong_signal(&mut tp, CC_NDUPACK);
    assert_eq!(tp.snd_ssthresh, 14 * MSS);

    // A per-connection beta_ecn is used even with cc.abe off.
    let (mut cc, mut tp) = conn(globals());
    assert!(
        ctl(&mut cc, &mut tp, SockOptDir::Set, CC_NEWRENO_BETA_ECN, 90)
            .0
            .is_ok()
    );
    tp.snd_cwnd = 20 * MSS;
    cc.cong_signal(&mut tp, CC_ECN);
    assert_eq!(tp.snd_cwnd, 18 * MSS);

    assert_eq!(
        ctl(&mut cc, &mut tp, SockOptDir::Set, CC_NEWRENO_BETA, 0).0,
        HookStatus(Errno::EINVAL.0)
    );
    assert_eq!(
        ctl(&mut cc, &mut tp, SockOptDir::Set, CC_NEWRENO_BETA, 101).0,
        HookStatus(Errno::EINVAL.0)
    );
    assert_eq!(
        ctl(&mut cc, &mut tp, SockOptDir::Set, 9, 50).0,
        HookStatus(Errno::ENOPROTOOPT.0)
    );
}

#[test]
fn beta_ecn_sysctl_needs_abe() {
    let g = globals();
    let check = cc_algo().param_check().unwrap();
    let current = testing::param_defaults::<NewReno>();
    let current = || current.as_slice().into();
    assert_eq!(
        check(PARAM_BETA_ECN as u32, 70, g, current()),
        HookStatus(Errno::EACCES.0)
    );
    assert!(check(PARAM_BETA as u32, 70, g, current()).is_ok());
    g.abe.store(1, Ordering::Relaxed);
    assert!(check(PARAM_BETA_ECN as u32, 70, g, current()).is_ok());
}

#[test]
fn cb_destroy_frees_state() {
    let (mut cc, _tp) = conn(globals());
    cc.assert_cb_destroy_frees_state();
}
