//! The shared control block: what host and stacks both know about one connection.
//!
//! Field names are FreeBSD's (`struct tcpcb`, netinet/tcp_var.h) so that people who know
//! FreeBSD find their way. Sequence numbers are raw 32-bit values (compare them with
//! [`crate::seq`]). Byte counts (windows, cwnd, ssthresh, MSS) are bytes.
//!
//! # Units of time
//!
//! FreeBSD keeps most times in ticks and the smoothed RTT in fixed point; plugtcp does not.
//! Each field's doc states its unit; in short:
//!
//! | fields | unit |
//! | --- | --- |
//! | `t_srtt`, `t_rttvar`, `t_rttmin`, `t_rxtcur` | microseconds, **unscaled** (no `TCP_RTT_SHIFT` / `TCP_RTTVAR_SHIFT` fixed point: `t_srtt = 40_000` is 40 ms) |
//! | `t_rtttime`, `ts_recent_age`, `t_starttime`, `t_rcvtime`, `t_sndtime` | nanoseconds on the host clock ([`crate::stack::HostOps::now`]) |
//! | `t_keepinit`, `t_keepidle`, `t_keepintvl`, `t_user_timeout` | milliseconds (0: the sysctl default; for `t_user_timeout`, off) |
//! | `ts_recent` | the peer's timestamp clock (opaque) |
//! | our timestamps (`TcpOpts::tsval`) | milliseconds of the host clock plus `ts_offset` |
//!
//! RTT values are microseconds so that RACK's microsecond timers, TCP_INFO (which reports
//! microseconds) and CC modules (FreeBSD's `usecs` RTT sample) need no conversion.
//!
//! # Who writes what
//!
//! The host owns the control block and the stack in charge writes most of it; which fields
//! the host itself reads and writes, and when, is listed in the stack module's contract
//! ([`crate::stack`], "The host<->stack contract"). Every field survives a stack switch
//! as it is, so a stack must keep the shared fields current (FreeBSD's stacks share
//! `struct tcpcb` the same way): a stack that keeps an RTT estimate of its own publishes
//! it into `t_srtt`/`t_rttvar`/`t_rxtcur`, and one that counts statistics counts them here.

use abi_stable::StableAbi;

/// TCP states, numbered as FreeBSD's `tcp_fsm.h`.
#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, StableAbi)]
pub enum TcpState {
    /// TCPS_CLOSED: not connected yet, or done (a connection the host or its stack closed).
    Closed = 0,
    /// TCPS_LISTEN: a listener. In plugtcp listeners live in the host (with the SYN cache);
    /// no stack runs one, but a Tcpcb in LISTEN is what `inherit` gets.
    Listen = 1,
    /// TCPS_SYN_SENT: our SYN is out (active open).
    SynSent = 2,
    /// TCPS_SYN_RECEIVED: the peer's SYN was received and ours sent, not yet acknowledged.
    SynReceived = 3,
    /// TCPS_ESTABLISHED: synchronized; data flows both ways.
    Established = 4,
    /// TCPS_CLOSE_WAIT: the peer's FIN arrived; we may still send.
    CloseWait = 5,
    /// TCPS_FIN_WAIT_1: we closed (FIN queued or sent), not yet acknowledged.
    FinWait1 = 6,
    /// TCPS_CLOSING: both closed at once; waiting for the ACK of our FIN.
    Closing = 7,
    /// TCPS_LAST_ACK: the peer closed first, then we did; waiting for the ACK of our FIN.
    LastAck = 8,
    /// TCPS_FIN_WAIT_2: our FIN was acknowledged; waiting for the peer's.
    FinWait2 = 9,
    /// TCPS_TIME_WAIT: both FINs exchanged; waiting 2*MSL. The host answers segments in
    /// this state itself (see the stack module's contract).
    TimeWait = 10,
}

impl TcpState {
    /// Every state, in FreeBSD's numbering order.
    pub const ALL: [TcpState; 11] = [
        TcpState::Closed,
        TcpState::Listen,
        TcpState::SynSent,
        TcpState::SynReceived,
        TcpState::Established,
        TcpState::CloseWait,
        TcpState::FinWait1,
        TcpState::Closing,
        TcpState::LastAck,
        TcpState::FinWait2,
        TcpState::TimeWait,
    ];

    /// FreeBSD's `tcpstates[]` spelling.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynReceived => "SYN_RCVD",
            TcpState::Established => "ESTABLISHED",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::FinWait1 => "FIN_WAIT_1",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST_ACK",
            TcpState::FinWait2 => "FIN_WAIT_2",
            TcpState::TimeWait => "TIME_WAIT",
        }
    }

    /// TCPS_HAVEESTABLISHED: the three-way handshake has completed.
    pub fn have_established(self) -> bool {
        self >= TcpState::Established
    }

    /// Our side has closed (FIN_WAIT_1 and after: `t_state > TCPS_CLOSE_WAIT`): no more
    /// data may be sent.
    pub fn sent_close(self) -> bool {
        self > TcpState::CloseWait
    }
}

/// A new connection's ssthresh: FreeBSD tcp_newtcpcb's `TCP_MAXWIN << TCP_MAX_WINSHIFT`,
/// the largest window there can be ("arbitrarily high", RFC 5681 3.1).
pub const TCP_INITIAL_SSTHRESH: u32 = 65535 << 14;

/// `t_flags` bits, FreeBSD values. Bits marked "unused in-tree" are defined for FreeBSD
/// compatibility; neither the host nor plugtcp's stacks set or read them.
pub mod tf {
    /// TF_ACKNOW: send an ACK at the next output.
    pub const ACKNOW: u32 = 0x0000_0001;
    /// TF_DELACK: an ACK is being delayed (the DELACK timer runs).
    pub const DELACK: u32 = 0x0000_0002;
    /// TF_NODELAY: no Nagle (TCP_NODELAY); the host copies it from a listener.
    pub const NODELAY: u32 = 0x0000_0004;
    /// TF_NOOPT: send no options (TCP_NOOPT); the host copies it from a listener.
    pub const NOOPT: u32 = 0x0000_0008;
    /// TF_SENTFIN: our FIN has been sent.
    pub const SENTFIN: u32 = 0x0000_0010;
    /// TF_REQ_SCALE: we asked for window scaling (set by the host on connect/SYN cache).
    pub const REQ_SCALE: u32 = 0x0000_0020;
    /// TF_RCVD_SCALE: the peer agreed to window scaling.
    pub const RCVD_SCALE: u32 = 0x0000_0040;
    /// TF_REQ_TSTMP: we asked for timestamps (set by the host on connect/SYN cache).
    pub const REQ_TSTMP: u32 = 0x0000_0080;
    /// TF_RCVD_TSTMP: the peer sent timestamps (in use when both TSTMP bits are set).
    pub const RCVD_TSTMP: u32 = 0x0000_0100;
    /// TF_SACK_PERMIT: SACK was agreed.
    pub const SACK_PERMIT: u32 = 0x0000_0200;
    /// TF_NEEDSYN: send a SYN in ESTABLISHED (unused in-tree).
    pub const NEEDSYN: u32 = 0x0000_0400;
    /// TF_NEEDFIN: send a FIN in SYN_RECEIVED (unused in-tree).
    pub const NEEDFIN: u32 = 0x0000_0800;
    /// TF_NOPUSH: hold back partial segments (TCP_NOPUSH, TCP_CORK).
    pub const NOPUSH: u32 = 0x0000_1000;
    /// TF_PREVVALID: saved cwnd/ssthresh valid for undoing a spurious RTO (unused in-tree:
    /// the engine keeps that in its own state).
    pub const PREVVALID: u32 = 0x0000_2000;
    /// TF_LASTIDLE: the connection was idle at the last output (unused in-tree).
    pub const LASTIDLE: u32 = 0x0004_0000;
    /// TF_RXWIN0SENT: the last window we advertised was zero.
    pub const RXWIN0SENT: u32 = 0x0008_0000;
    /// TF_FASTRECOVERY: in loss recovery (duplicate ACKs, SACK or RACK). Set by the CC
    /// module's `cong_signal(CC_NDUPACK)` (FreeBSD ENTER_FASTRECOVERY), cleared when
    /// recovery ends (`CcConn::on_post_recovery`) or on an RTO (`on_cong_signal(CC_RTO)`);
    /// the host clears it itself on an ICMP "fragmentation needed" for a SACK connection.
    pub const FASTRECOVERY: u32 = 0x0010_0000;
    /// TF_WASFRECOVERY: was in fast recovery before an RTO (unused in-tree).
    pub const WASFRECOVERY: u32 = 0x0020_0000;
    /// TF_SIGNATURE: TCP-MD5 (TCP_MD5SIG, set by the host): every segment carries the
    /// signature option; the host drops what arrives without a right digest.
    pub const SIGNATURE: u32 = 0x0040_0000;
    /// TF_FORCEDATA: send data even into a closed window (a window probe).
    pub const FORCEDATA: u32 = 0x0080_0000;
    /// TF_CLOSED: the application called close(2) (set by the host; the stack may give an
    /// orphaned FIN_WAIT_2 a lifetime, and resets a closed connection that gets new data).
    pub const CLOSED: u32 = 0x0400_0000;
    /// TF_SENTSYN: our SYN has been sent.
    pub const SENTSYN: u32 = 0x0800_0000;
    /// TF_LRD: lost retransmission detection state (unused in-tree).
    pub const LRD: u32 = 0x1000_0000;
    /// TF_CONGRECOVERY: in congestion recovery (a window reduction, ECN or loss). Set by
    /// the CC module's `cong_signal` (FreeBSD ENTER_CONGRECOVERY).
    pub const CONGRECOVERY: u32 = 0x2000_0000;
    /// TF_WASCRECOVERY: was in congestion recovery before an RTO (unused in-tree).
    pub const WASCRECOVERY: u32 = 0x4000_0000;
    /// TF_FASTOPEN: TCP Fast Open (RFC 7413). Set by the host: on a client that asked for it
    /// (TCP_FASTOPEN, TCP_FASTOPEN_CONNECT, MSG_FASTOPEN) and whose path is not disabled,
    /// the stack's first SYN carries the FO option with `t_tfo_cookie` and, with a cookie,
    /// data; on a passive connection whose SYN carried the FO option (with a valid cookie
    /// the host made it at once, in SYN_RECEIVED with the SYN's data, nothing sent yet:
    /// the stack sends the SYN-ACK and may send data before the handshake completes).
    pub const FASTOPEN: u32 = 0x8000_0000;
    /// IN_RECOVERY(): either kind of recovery.
    pub const INRECOVERY: u32 = FASTRECOVERY | CONGRECOVERY;
}

/// `t_flags2` bits: FreeBSD's values for FreeBSD's bits, and plugtcp's own (marked so)
/// above them.
pub mod tf2 {
    /// TF2_PLPMTU_BLACKHOLE: PMTU blackhole detection lowered the MSS after timeouts of
    /// full-sized segments (`t_pmtud_saved_maxseg` holds the MSS before).
    pub const PLPMTU_BLACKHOLE: u32 = 0x0000_0001;
    /// TF2_PLPMTU_MAXSEGSNT: the last segment sent was full-sized (blackhole detection only
    /// suspects the path when such segments time out).
    pub const PLPMTU_MAXSEGSNT: u32 = 0x0000_0004;
    /// plugtcp: the host's `sack.globalmaxholes` is reached: the stack makes no new SACK
    /// holes for now (set by the host before each call).
    pub const SACK_HOLES_FULL: u32 = 0x4000_0000;
    /// TF2_LOG_AUTO: BB logging chosen automatically (unused in-tree).
    pub const LOG_AUTO: u32 = 0x0000_0020;
    /// TF2_DROP_AF_DATA: drop data after FIN (unused in-tree).
    pub const DROP_AF_DATA: u32 = 0x0000_0040;
    /// TF2_ECN_PERMIT: ECN was agreed (set by the host's SYN cache or by the stack).
    pub const ECN_PERMIT: u32 = 0x0000_0080;
    /// TF2_ECN_SND_CWR: send CWR on the next new data segment (set by
    /// `CcConn::on_cong_signal`/`on_ecn_signal`, cleared by the stack when sent).
    pub const ECN_SND_CWR: u32 = 0x0000_0100;
    /// TF2_ECN_SND_ECE: echo ECE until the peer's CWR (a CE mark was received).
    pub const ECN_SND_ECE: u32 = 0x0000_0200;
    /// TF2_ACE_PERMIT: AccECN agreed (unused in-tree: plugtcp does not negotiate it).
    pub const ACE_PERMIT: u32 = 0x0000_0400;
    /// TF2_FBYTES_COMPLETE: TFO first bytes complete (unused in-tree).
    pub const FBYTES_COMPLETE: u32 = 0x0000_1000;
    /// SO_KEEPALIVE is on (FreeBSD keeps it in so_options; plugtcp here, because the host
    /// owns the socket). Written by the host (setsockopt, listener inheritance); stacks
    /// read it. plugtcp's own.
    pub const KEEPALIVE: u32 = 0x0001_0000;
    /// SO_OOBINLINE (unused in-tree: the host keeps SO_OOBINLINE on its side of the
    /// connection, not here). plugtcp's own.
    pub const OOBINLINE: u32 = 0x0002_0000;
    /// The peer's FIN has been received (the socket layer's "can't receive more"; plugtcp
    /// keeps it here because the host owns the socket). Set by the stack when the FIN is
    /// taken in order (with `ConnEvent::Readable`); the host reads it: recv returns end of
    /// stream once the buffer is empty. plugtcp's own.
    pub const FIN_RCVD: u32 = 0x0100_0000;
    // 0x0200_0000 was INPUT_BATCH until ABI 0.8.0 (now `HostIf::input_batch`).
    /// The peer is one of this host's own addresses (for `nolocaltimewait`). Set by the host
    /// when the connection gets its addresses. plugtcp's own.
    pub const LOCAL_PEER: u32 = 0x0400_0000;
    /// The connection runs over IPv6 (FreeBSD's INP_IPV6): `v6mssdflt` applies. Set by the
    /// host. plugtcp's own.
    pub const INET6: u32 = 0x0800_0000;
    /// Quick-ACK mode (Linux TCP_QUICKACK): every data segment is acknowledged at once until
    /// the stack leaves the mode (an interactive exchange: we send data soon after
    /// receiving). In the tcpcb, so that it survives a stack switch; the host copies it from
    /// a listener. plugtcp's own.
    pub const QUICKACK: u32 = 0x1000_0000;
    /// TF_NOPUSH was set through Linux's TCP_CORK: held-back data goes out after 200 ms
    /// at most, and when TCP_NODELAY is set. The host copies it from a listener. plugtcp's
    /// own.
    pub const CORK: u32 = 0x2000_0000;
}

/// The shared TCP control block (FreeBSD `struct tcpcb`). The host owns it (inline in its
/// connection slot); stacks read and write it in their hooks; a stack switch hands it over
/// as it is. CC modules get it `&mut` in every hook and change `snd_cwnd`, `snd_ssthresh`
/// and the recovery bits of `t_flags`.
///
/// "Host writes" below lists where the host itself changes a field; everything else is the
/// stack's (see the stack module's contract for the complete list).
#[repr(C)]
#[derive(Clone, Debug, StableAbi)]
pub struct Tcpcb {
    /// The connection state (FreeBSD t_state). Written by the stack's state machine, and by
    /// the host: CLOSED -> SYN_SENT on connect, SYN_RECEIVED for a connection made by the
    /// SYN cache, SYN_RECEIVED/ESTABLISHED -> FIN_WAIT_1 and CLOSE_WAIT -> LAST_ACK on
    /// shutdown(SHUT_WR)/close, SYN_SENT -> CLOSED on shutdown, and -> CLOSED when it drops
    /// the connection (tcpdrop, ICMP, a SYN that recycles TIME_WAIT).
    pub t_state: TcpState,
    /// Send window scale: the peer's shift, applied to its window fields (FreeBSD
    /// snd_scale, 0..=14).
    pub snd_scale: u8,
    /// Receive window scale: our shift, applied to the windows we advertise (rcv_scale).
    pub rcv_scale: u8,
    /// The shift our SYN offered (request_r_scale); becomes `rcv_scale` when agreed.
    pub request_r_scale: u8,
    /// `tf::*` bits (FreeBSD t_flags).
    pub t_flags: u32,
    /// `tf2::*` bits (FreeBSD t_flags2, plus plugtcp's own).
    pub t_flags2: u32,

    // send sequence space
    /// Initial send sequence number (iss). Chosen by the host (RFC 6528) on connect and in
    /// the SYN cache; stacks never change it. The host takes `iss == 0` to mean "never
    /// connected" (connect and listen refuse a socket whose iss is not 0).
    pub iss: u32,
    /// Oldest unacknowledged sequence number (snd_una). The front of the send buffer is
    /// here (at `snd_una + 1` while our SYN is unacknowledged); a stack that advances it
    /// drops the acknowledged bytes with `HostOps::snd_drop`.
    pub snd_una: u32,
    /// Next sequence number to send (snd_nxt); below `snd_max` while retransmitting. Host
    /// writes: set to `snd_una` on an ICMP "fragmentation needed" (FreeBSD tcp_mtudisc).
    pub snd_nxt: u32,
    /// Highest sequence number sent, plus one (snd_max).
    pub snd_max: u32,
    /// Send urgent pointer (snd_up), BSD style: the sequence number after the urgent byte;
    /// equal to (or behind) `snd_una` when nothing urgent is outstanding. Host writes: set
    /// by send(MSG_OOB) before the stack's `output`.
    pub snd_up: u32,
    /// Sequence number of the segment that last updated `snd_wnd` (snd_wl1).
    pub snd_wl1: u32,
    /// Acknowledgment number of the segment that last updated `snd_wnd` (snd_wl2).
    pub snd_wl2: u32,
    /// `snd_max` when the current recovery began (snd_recover, RFC 6582's "recover");
    /// recovery ends when it is acknowledged. Host writes: set to `snd_max` on an ICMP
    /// "fragmentation needed".
    pub snd_recover: u32,
    /// Peer's advertised window, scaled to bytes.
    pub snd_wnd: u32,
    /// Congestion window, bytes (snd_cwnd). Written by the CC module and the stack. Some
    /// values are markers for [`crate::cc::CcConn::on_conn_init`] (as in FreeBSD):
    /// `u32::MAX` (what [`Tcpcb::new`] sets) or 0 mean "not set yet: use the initial
    /// window", 1 means "a SYN or SYN-ACK was retransmitted: start with one segment" (set
    /// by the stack on a SYN timeout, by the host for a SYN-cache connection whose SYN-ACK
    /// was retransmitted).
    pub snd_cwnd: u32,
    /// Slow-start threshold, bytes (snd_ssthresh); [`TCP_INITIAL_SSTHRESH`] at first.
    /// Written by the CC module (and by a stack undoing a spurious RTO).
    pub snd_ssthresh: u32,
    /// Largest window the peer has offered, bytes (max_sndwnd).
    pub max_sndwnd: u32,

    // receive sequence space
    /// Initial receive sequence number: the peer's ISN (irs). Host writes: SYN cache.
    pub irs: u32,
    /// Next sequence number expected (rcv_nxt); the readable end of the receive buffer
    /// corresponds to it (a FIN taken counts one more). The host reads it to place LRO
    /// payloads, answer in TIME_WAIT and locate the urgent byte.
    pub rcv_nxt: u32,
    /// Right edge of the window we last advertised, a sequence number (rcv_adv).
    pub rcv_adv: u32,
    /// Receive urgent pointer (rcv_up), BSD style: the sequence number after the peer's
    /// urgent byte. The host reads it when the stack reports `ConnEvent::Urgent`.
    pub rcv_up: u32,
    /// FreeBSD's rcv_wnd (the receive window). Not maintained by plugtcp's stacks, which ask
    /// the host for the window (`HostOps::rcv_space`): it stays 0 unless a stack sets it.
    /// [`crate::stack::TcpInfo::from_tcpcb`] reports it as `tcpi_rcv_space`.
    pub rcv_wnd: u32,

    /// Maximum segment size for sending (FreeBSD t_maxseg), bytes: what one segment may
    /// carry of payload and per-segment options together (the path MTU less the IP and
    /// base TCP headers), so a full data segment carries [`Tcpcb::maxseg`] payload bytes
    /// when timestamps are in use. Host writes: from the link MTU when the connection is
    /// made (MTU - 40 for IPv4, - 60 for IPv6, at least `minmss`), lowered to the peer's
    /// MSS for a SYN-cache connection, lowered on an ICMP "fragmentation needed" (before it
    /// calls `mtu_chg`).
    pub t_maxseg: u32,
    /// MSS the peer offered in its SYN, bytes (the family's `mssdflt` when it offered
    /// none).
    pub t_peer_mss: u32,

    // round trip timing (microseconds, unscaled)
    /// Smoothed RTT, **microseconds, unscaled** (FreeBSD t_srtt is ticks << TCP_RTT_SHIFT;
    /// not here). 0 until the first sample. Published by the stack after each sample (the
    /// engine copies its estimator here); read by CC modules, TCP_INFO (`tcpi_rtt`), the
    /// metrics, and a stack switched in (which seeds its estimator from it).
    pub t_srtt: u32,
    /// RTT variation, **microseconds, unscaled** (FreeBSD t_rttvar is fixed point with
    /// TCP_RTTVAR_SHIFT; not here). 0 until the first sample.
    pub t_rttvar: u32,
    /// Minimum RTO, microseconds (t_rttmin): 30 000 (`rexmit_min`'s default) from
    /// [`Tcpcb::new`]. Not read or written by plugtcp's host or stacks, which take
    /// `rexmit_min` from the tunables.
    pub t_rttmin: u32,
    /// Current retransmission timeout, microseconds, with the backoff for `t_rxtshift`
    /// applied (FreeBSD t_rxtcur, in ticks there). 1 s from [`Tcpcb::new`]. TCP_INFO's
    /// `tcpi_rto`.
    pub t_rxtcur: u32,
    /// Consecutive retransmission timeouts, the backoff exponent (t_rxtshift); the persist
    /// timer's backoff too. 0 after a valid RTT sample. The host reads it (an ICMP soft error
    /// during the handshake drops the connection once it is above 3).
    pub t_rxtshift: u32,
    /// Sequence number being timed (t_rtseq). Not maintained by plugtcp's stacks (the
    /// engine times segments in its own state): 0.
    pub t_rtseq: u32,
    /// When the timed segment was sent (ns; 0 = none timed). Not maintained by plugtcp's
    /// stacks: 0.
    pub t_rtttime: u64,
    /// Duplicate ACKs counted in a row (t_dupacks).
    pub t_dupacks: u32,
    /// Bytes acknowledged in congestion avoidance not yet worth a segment of growth (RFC
    /// 3465 ABC; FreeBSD t_bytes_acked). Maintained by [`crate::cc::CcConn::on_ack`] and
    /// reset by `on_cong_signal(CC_RTO)` and `on_post_recovery`.
    pub t_bytes_acked: u32,

    // timestamps (RFC 7323)
    /// The peer's last timestamp value worth echoing (ts_recent), in the peer's clock.
    /// Host writes: SYN cache.
    pub ts_recent: u32,
    /// When `ts_recent` was taken: nanoseconds on the host clock (FreeBSD ticks). Host
    /// writes: SYN cache.
    pub ts_recent_age: u64,
    /// Our per-connection timestamp offset (RFC 7323 5.4): our TSval is the host clock in
    /// milliseconds plus this. Chosen by the host on connect and in the SYN cache.
    pub ts_offset: u32,

    // times (ns on the host clock)
    /// When the connection started: nanoseconds on the host clock. Written by the host on
    /// connect (active opens only; 0 for accepted connections); nothing reads it in-tree.
    pub t_starttime: u64,
    /// When the last segment was received: nanoseconds on the host clock (FreeBSD
    /// t_rcvtime, ticks there). Written by the stack in `do_segment` (the host does not);
    /// read by CC modules (idle detection) and keepalive.
    pub t_rcvtime: u64,
    /// When we last sent a segment: nanoseconds on the host clock (t_sndtime).
    pub t_sndtime: u64,

    // keepalive and timeouts (ms, as the socket options give them; 0 = sysctl default)
    /// TCP_KEEPINIT: connection-establishment timeout, **milliseconds** (0: the `keepinit`
    /// sysctl). Written by the host (setsockopt takes seconds and stores ms).
    pub t_keepinit: u32,
    /// TCP_KEEPIDLE: idle time before the first keepalive probe, **milliseconds** (0: the
    /// `keepidle` sysctl). Written by the host.
    pub t_keepidle: u32,
    /// TCP_KEEPINTVL: time between keepalive probes, **milliseconds** (0: the `keepintvl`
    /// sysctl). Written by the host.
    pub t_keepintvl: u32,
    /// TCP_KEEPCNT: unanswered probes before the connection is dropped, a count (0: the
    /// `keepcnt` sysctl). Written by the host.
    pub t_keepcnt: u32,
    /// TCP_USER_TIMEOUT (Linux): how long sent data may stay unacknowledged,
    /// **milliseconds** (0: off). Written by the host.
    pub t_user_timeout: u32,

    // statistics (TCP_INFO)
    /// Segments retransmitted (FreeBSD t_sndrexmitpack; TCP_INFO `tcpi_snd_rexmitpack`).
    pub t_sndrexmitpack: u64,
    /// Out-of-order segments received (t_rcvoopack; `tcpi_rcv_ooopack`).
    pub t_rcvoopack: u64,
    /// Zero windows we advertised (t_sndzerowin; `tcpi_snd_zerowin`).
    pub t_sndzerowin: u64,
    /// Bytes of new data sent, first transmissions only (`tcpi_snd_bytes`).
    pub t_snd_bytes: u64,
    /// Bytes received in order (`tcpi_rcv_bytes`).
    pub t_rcv_bytes: u64,
    /// Segments sent; a TSO descriptor counts as the packets it becomes.
    pub t_snd_segs: u64,
    /// Segments received: `do_segment` calls, so an LRO aggregate counts once.
    pub t_rcv_segs: u64,
    /// Bytes retransmitted (`tcpi_rexmit_bytes`).
    pub t_rexmit_bytes: u64,
    /// Bytes D-SACK blocks reported (FreeBSD t_dsack_bytes).
    pub t_dsack_bytes: u64,
    /// D-SACK blocks received (FreeBSD t_dsack_pack).
    pub t_dsack_pack: u32,
    /// Tail loss probes sent (FreeBSD t_sndtlppack). Counts are 32 bits, as FreeBSD's, to
    /// keep the control block small.
    pub t_sndtlppack: u32,
    /// Bytes sent in tail loss probes (FreeBSD t_sndtlpbyte).
    pub t_sndtlpbyte: u64,
    // This connection's share of the stack's tcpstat counters (TCP_STATS). They live here,
    // not in the stack, so that they survive a stack switch.
    /// Duplicate ACKs received (tcps_rcvdupack).
    pub t_rcvdupack: u32,
    /// Retransmission timeouts (tcps_rexmttimeo).
    pub t_rexmttimeo: u32,
    /// Loss recovery episodes (tcps_sack_recovery_episode).
    pub t_sack_recovery_episode: u32,
    /// Retransmissions found lost again (lost retransmission detection).
    pub t_lost_rexmit: u32,
    /// Congestion window reductions on ECN-Echo (one per episode).
    pub t_ecn_reductions: u32,
    /// Persist timer expirations: zero-window probes (tcps_persisttimeo).
    pub t_persisttimeo: u32,
    /// Keepalive probes sent (tcps_keepprobe).
    pub t_keepprobe: u32,

    /// so_error: set by the stack when a connection fails (ECONNRESET, ETIMEDOUT, ...),
    /// before it closes it; an [`crate::Errno`] value, 0 for none. The host returns it from
    /// the application's next send/recv. Host writes: ECONNABORTED on tcpdrop, the ICMP
    /// error when ICMP drops the connection, and an ETIMEDOUT is replaced by the last ICMP
    /// soft error when the connection leaves the lookup table (FreeBSD t_softerror).
    pub t_softerror: i32,
    /// TSO: how many packets one `SegOut` may become (1 = no TSO). The host sets it before
    /// each call from its `net.inet.tcp.tso` sysctl (FreeBSD: TF_TSO and t_tsomaxsegcount).
    pub t_tsomax_segs: u32,
    /// TCP Fast Open client: the cookie the first SYN carries (`t_tfo_cookie[..len]`; 0 is
    /// a cookie request and no data goes with the SYN). Set by the host from its client
    /// cookie cache at connect (FreeBSD t_tfo_client_cookie_len, t_tfo_cookie.client).
    pub t_tfo_client_cookie_len: u8,
    /// See `t_tfo_client_cookie_len`.
    pub t_tfo_cookie: [u8; 16],
    /// The MSS before PMTU blackhole detection lowered it (FreeBSD t_pmtud_saved_maxseg);
    /// put back when the smaller one does not help either.
    pub t_pmtud_saved_maxseg: u32,
    /// Host cache hints for a new connection (FreeBSD cc_conn_init reads them from the host
    /// cache): the peer's smoothed RTT and variance (microseconds) from earlier
    /// connections, for a stack to start its estimator with when the handshake gave no
    /// sample, and the ssthresh (bytes) to start with. 0: nothing known. Set by the host
    /// before the handshake.
    pub t_hc_rtt: u32,
    /// See `t_hc_rtt`.
    pub t_hc_rttvar: u32,
    /// See `t_hc_rtt`.
    pub t_hc_ssthresh: u32,
    /// Out-of-order segments (ranges) held for reassembly (FreeBSD t_segqlen). Kept by the
    /// stack; the host sums them for `reass.cursegments` and enforces
    /// `reass.maxsegments` over all connections.
    pub t_segqlen: u32,
    /// Holes in the SACK scoreboard (FreeBSD snd_numholes). Kept by the stack; the host
    /// sums them for `sack.globalholes`.
    pub snd_numholes: u32,
}

impl Tcpcb {
    /// FreeBSD tcp_fixed_maxseg(): what a full segment carries, t_maxseg less the options
    /// every segment has (the 12 bytes of timestamps when they are in use). CC modules count
    /// their windows in it, so a window of N segments is N segments on the wire.
    pub fn maxseg(&self) -> u32 {
        let ts = tf::REQ_TSTMP | tf::RCVD_TSTMP;
        if self.t_flags & ts == ts {
            self.t_maxseg.saturating_sub(12).max(1)
        } else {
            self.t_maxseg
        }
    }

    /// The RST that drops this connection (FreeBSD tcp_drop: tcp_output in CLOSED): RST|ACK
    /// at snd_max (at snd_nxt while persisting: the probe byte was never really sent),
    /// acknowledging rcv_nxt, window 0, with the timestamp option when timestamps are in
    /// use. `now_ns` is the connection's clock.
    pub fn drop_rst(&self, persisting: bool, now_ns: u64) -> crate::segment::SegOut {
        use crate::segment::{th, to, SegOut, TcpOpts};
        let mut opts = TcpOpts::default();
        let ts = tf::REQ_TSTMP | tf::RCVD_TSTMP;
        if self.t_flags & ts == ts {
            opts.flags |= to::TSTAMP;
            opts.tsval = ((now_ns / 1_000_000) as u32).wrapping_add(self.ts_offset);
            opts.tsecr = self.ts_recent;
        }
        if self.t_flags & tf::SIGNATURE != 0 {
            opts.flags |= to::SIGNATURE;
        }
        SegOut {
            seq: if persisting {
                self.snd_nxt
            } else {
                self.snd_max
            },
            ack: self.rcv_nxt,
            flags: th::RST | th::ACK,
            opts,
            ..Default::default()
        }
    }

    /// A control block for a new connection, FreeBSD's tcp_newtcpcb() defaults: CLOSED,
    /// `t_maxseg = maxseg`, `snd_cwnd = u32::MAX` (not set yet), `snd_ssthresh =`
    /// [`TCP_INITIAL_SSTHRESH`], `t_rxtcur` 1 s, `t_rttmin` 30 ms, `t_tsomax_segs` 1,
    /// everything else 0.
    pub fn new(maxseg: u32) -> Self {
        Tcpcb {
            t_state: TcpState::Closed,
            snd_scale: 0,
            rcv_scale: 0,
            request_r_scale: 0,
            t_flags: 0,
            t_flags2: 0,
            iss: 0,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            snd_up: 0,
            snd_wl1: 0,
            snd_wl2: 0,
            snd_recover: 0,
            snd_wnd: 0,
            snd_cwnd: u32::MAX,
            snd_ssthresh: TCP_INITIAL_SSTHRESH,
            max_sndwnd: 0,
            irs: 0,
            rcv_nxt: 0,
            rcv_adv: 0,
            rcv_up: 0,
            rcv_wnd: 0,
            t_maxseg: maxseg,
            t_peer_mss: 0,
            t_srtt: 0,
            t_rttvar: 0,
            t_rttmin: 30_000,
            t_rxtcur: 1_000_000,
            t_rxtshift: 0,
            t_rtseq: 0,
            t_rtttime: 0,
            t_dupacks: 0,
            t_bytes_acked: 0,
            ts_recent: 0,
            ts_recent_age: 0,
            ts_offset: 0,
            t_starttime: 0,
            t_rcvtime: 0,
            t_sndtime: 0,
            t_keepinit: 0,
            t_keepidle: 0,
            t_keepintvl: 0,
            t_keepcnt: 0,
            t_user_timeout: 0,
            t_sndrexmitpack: 0,
            t_rcvoopack: 0,
            t_sndzerowin: 0,
            t_snd_bytes: 0,
            t_rcv_bytes: 0,
            t_snd_segs: 0,
            t_rcv_segs: 0,
            t_rexmit_bytes: 0,
            t_dsack_bytes: 0,
            t_dsack_pack: 0,
            t_sndtlppack: 0,
            t_sndtlpbyte: 0,
            t_rcvdupack: 0,
            t_rexmttimeo: 0,
            t_sack_recovery_episode: 0,
            t_lost_rexmit: 0,
            t_ecn_reductions: 0,
            t_persisttimeo: 0,
            t_keepprobe: 0,
            t_softerror: 0,
            t_tsomax_segs: 1,
            t_tfo_client_cookie_len: 0,
            t_tfo_cookie: [0; 16],
            t_pmtud_saved_maxseg: 0,
            t_hc_rtt: 0,
            t_hc_rttvar: 0,
            t_hc_ssthresh: 0,
            t_segqlen: 0,
            snd_numholes: 0,
        }
    }

    /// Bytes sent and not yet acknowledged (snd_max - snd_una).
    #[inline]
    pub fn flight_size(&self) -> u32 {
        self.snd_max.wrapping_sub(self.snd_una)
    }

    /// IN_RECOVERY(): fast or congestion recovery (`tf::INRECOVERY`).
    #[inline]
    pub fn in_recovery(&self) -> bool {
        self.t_flags & tf::INRECOVERY != 0
    }

    /// IN_FASTRECOVERY(): loss recovery (`tf::FASTRECOVERY`).
    #[inline]
    pub fn in_fastrecovery(&self) -> bool {
        self.t_flags & tf::FASTRECOVERY != 0
    }

    /// IN_CONGRECOVERY(): congestion recovery (`tf::CONGRECOVERY`).
    #[inline]
    pub fn in_congrecovery(&self) -> bool {
        self.t_flags & tf::CONGRECOVERY != 0
    }
}
