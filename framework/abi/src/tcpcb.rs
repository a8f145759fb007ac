//! The shared control block: what host and stacks both know about one connection.
//!
//! Field names are FreeBSD's (`struct tcpcb`, netinet/tcp_var.h) so that people who know
//! FreeBSD find their way. Sequence numbers are raw 32-bit values (compare them with
//! [`crate::seq`]). Times are microseconds where FreeBSD uses ticks, so that RACK's
//! microsecond timers and TCP_INFO need no conversion.

use abi_stable::StableAbi;

/// TCP states, numbered as FreeBSD's `tcp_fsm.h`.
#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, StableAbi)]
pub enum TcpState {
    Closed = 0,
    Listen = 1,
    SynSent = 2,
    SynReceived = 3,
    Established = 4,
    CloseWait = 5,
    FinWait1 = 6,
    Closing = 7,
    LastAck = 8,
    FinWait2 = 9,
    TimeWait = 10,
}

impl TcpState {
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

/// `t_flags` bits, FreeBSD values.
pub mod tf {
    pub const ACKNOW: u32 = 0x0000_0001;
    pub const DELACK: u32 = 0x0000_0002;
    pub const NODELAY: u32 = 0x0000_0004;
    pub const NOOPT: u32 = 0x0000_0008;
    pub const SENTFIN: u32 = 0x0000_0010;
    pub const REQ_SCALE: u32 = 0x0000_0020;
    pub const RCVD_SCALE: u32 = 0x0000_0040;
    pub const REQ_TSTMP: u32 = 0x0000_0080;
    pub const RCVD_TSTMP: u32 = 0x0000_0100;
    pub const SACK_PERMIT: u32 = 0x0000_0200;
    pub const NEEDSYN: u32 = 0x0000_0400;
    pub const NEEDFIN: u32 = 0x0000_0800;
    pub const NOPUSH: u32 = 0x0000_1000;
    pub const PREVVALID: u32 = 0x0000_2000;
    pub const LASTIDLE: u32 = 0x0004_0000;
    pub const RXWIN0SENT: u32 = 0x0008_0000;
    pub const FASTRECOVERY: u32 = 0x0010_0000;
    pub const WASFRECOVERY: u32 = 0x0020_0000;
    pub const SIGNATURE: u32 = 0x0040_0000;
    pub const FORCEDATA: u32 = 0x0080_0000;
    pub const CLOSED: u32 = 0x0400_0000;
    pub const SENTSYN: u32 = 0x0800_0000;
    pub const LRD: u32 = 0x1000_0000;
    pub const CONGRECOVERY: u32 = 0x2000_0000;
    pub const WASCRECOVERY: u32 = 0x4000_0000;
    pub const FASTOPEN: u32 = 0x8000_0000;
    /// IN_RECOVERY(): either kind of recovery.
    pub const INRECOVERY: u32 = FASTRECOVERY | CONGRECOVERY;
}

/// `t_flags2` bits, FreeBSD values.
pub mod tf2 {
    pub const PLPMTU_BLACKHOLE: u32 = 0x0000_0001;
    pub const LOG_AUTO: u32 = 0x0000_0020;
    pub const DROP_AF_DATA: u32 = 0x0000_0040;
    pub const ECN_PERMIT: u32 = 0x0000_0080;
    pub const ECN_SND_CWR: u32 = 0x0000_0100;
    pub const ECN_SND_ECE: u32 = 0x0000_0200;
    pub const ACE_PERMIT: u32 = 0x0000_0400;
    pub const FBYTES_COMPLETE: u32 = 0x0000_1000;
    pub const KEEPALIVE: u32 = 0x0001_0000;
    pub const OOBINLINE: u32 = 0x0002_0000;
    /// The peer's FIN has been received (the socket layer's "can't receive more"; plugtcp
    /// keeps it here because the host owns the socket).
    pub const FIN_RCVD: u32 = 0x0100_0000;
    /// Set by the host while it hands a connection several segments received together (a
    /// batch, as LRO/GRO give one): the stack may leave output (the ACK) to the end of the
    /// batch, when the host calls `output` once. plugtcp's own flag.
    pub const INPUT_BATCH: u32 = 0x0200_0000;
    /// The peer is one of this host's own addresses (for `nolocaltimewait`). plugtcp's own.
    pub const LOCAL_PEER: u32 = 0x0400_0000;
    /// The connection runs over IPv6 (FreeBSD's INP_IPV6): `v6mssdflt` applies. Set by the
    /// host. plugtcp's own.
    pub const INET6: u32 = 0x0800_0000;
    /// Quick-ACK mode (Linux TCP_QUICKACK): every data segment is acknowledged at once until
    /// the stack leaves the mode (an interactive exchange: we send data soon after
    /// receiving). In the tcpcb, so that it survives a stack switch. plugtcp's own.
    pub const QUICKACK: u32 = 0x1000_0000;
    /// TF_NOPUSH was set through Linux's TCP_CORK: held-back data goes out after 200 ms
    /// at most, and when TCP_NODELAY is set. plugtcp's own.
    pub const CORK: u32 = 0x2000_0000;
}

/// The shared TCP control block. The host owns it (inline in its connection slot); stacks
/// read and write it in their hooks; a stack switch hands it over as it is.
#[repr(C)]
#[derive(Clone, Debug, StableAbi)]
pub struct Tcpcb {
    pub t_state: TcpState,
    /// Send window scale (peer's shift), receive window scale (ours), requested scale.
    pub snd_scale: u8,
    pub rcv_scale: u8,
    pub request_r_scale: u8,
    pub t_flags: u32,
    pub t_flags2: u32,

    // send sequence space
    pub iss: u32,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub snd_max: u32,
    pub snd_up: u32,
    pub snd_wl1: u32,
    pub snd_wl2: u32,
    pub snd_recover: u32,
    /// Peer's advertised window, scaled to bytes.
    pub snd_wnd: u32,
    pub snd_cwnd: u32,
    pub snd_ssthresh: u32,
    /// Largest window the peer has offered.
    pub max_sndwnd: u32,

    // receive sequence space
    pub irs: u32,
    pub rcv_nxt: u32,
    pub rcv_adv: u32,
    pub rcv_up: u32,
    pub rcv_wnd: u32,

    /// Maximum segment size for sending (payload bytes, without options).
    pub t_maxseg: u32,
    /// MSS the peer offered in its SYN.
    pub t_peer_mss: u32,

    // round trip timing (microseconds, unscaled)
    pub t_srtt: u32,
    pub t_rttvar: u32,
    pub t_rttmin: u32,
    /// Current retransmit timeout.
    pub t_rxtcur: u32,
    pub t_rxtshift: u32,
    pub t_rtseq: u32,
    /// When the timed segment was sent (ns; 0 = none timed).
    pub t_rtttime: u64,
    pub t_dupacks: u32,
    pub t_bytes_acked: u32,

    // timestamps (RFC 7323)
    pub ts_recent: u32,
    pub ts_recent_age: u64,
    pub ts_offset: u32,

    // times (ns on the host clock)
    pub t_starttime: u64,
    pub t_rcvtime: u64,
    pub t_sndtime: u64,

    // keepalive and timeouts (ms, as the socket options give them; 0 = sysctl default)
    pub t_keepinit: u32,
    pub t_keepidle: u32,
    pub t_keepintvl: u32,
    pub t_keepcnt: u32,
    pub t_user_timeout: u32,

    // statistics (TCP_INFO)
    pub t_sndrexmitpack: u64,
    pub t_rcvoopack: u64,
    pub t_sndzerowin: u64,
    pub t_snd_bytes: u64,
    pub t_rcv_bytes: u64,
    pub t_snd_segs: u64,
    pub t_rcv_segs: u64,
    pub t_rexmit_bytes: u64,
    pub t_dsack_bytes: u64,
    /// D-SACK blocks received (FreeBSD t_dsack_pack).
    pub t_dsack_pack: u32,
    /// Tail loss probes sent and their bytes (FreeBSD t_sndtlppack, t_sndtlpbyte).
    /// Counts are 32 bits, as FreeBSD's, to keep the control block small.
    pub t_sndtlppack: u32,
    pub t_sndtlpbyte: u64,
    // This connection's share of the stack's tcpstat counters (TCP_STATS). They live here,
    // not in the stack, so that they survive a stack switch.
    pub t_rcvdupack: u32,
    pub t_rexmttimeo: u32,
    pub t_sack_recovery_episode: u32,
    pub t_lost_rexmit: u32,
    pub t_ecn_reductions: u32,
    pub t_persisttimeo: u32,
    pub t_keepprobe: u32,

    /// so_error: set by the stack when a connection fails (ECONNRESET, ETIMEDOUT, ...).
    pub t_softerror: i32,
    /// TSO: how many packets one `SegOut` may become (1 = no TSO). The host sets it before
    /// each call from its `net.inet.tcp.tso` sysctl (FreeBSD: TF_TSO and t_tsomaxsegcount).
    pub t_tsomax_segs: u32,
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

    /// A control block for a new connection, FreeBSD's tcp_newtcpcb() defaults.
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
        }
    }

    /// Bytes sent and not yet acknowledged (snd_max - snd_una).
    #[inline]
    pub fn flight_size(&self) -> u32 {
        self.snd_max.wrapping_sub(self.snd_una)
    }

    #[inline]
    pub fn in_recovery(&self) -> bool {
        self.t_flags & tf::INRECOVERY != 0
    }

    #[inline]
    pub fn in_fastrecovery(&self) -> bool {
        self.t_flags & tf::FASTRECOVERY != 0
    }

    #[inline]
    pub fn in_congrecovery(&self) -> bool {
        self.t_flags & tf::CONGRECOVERY != 0
    }
}
