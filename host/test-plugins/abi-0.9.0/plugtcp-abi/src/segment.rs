//! Segment descriptors: a parsed incoming segment, and an outgoing segment the host builds.
//!
//! The host parses and checksums; a stack sees header fields and a borrowed payload, and
//! asks for output by sequence number and send-buffer offset, so payload bytes are copied
//! once, from the send buffer into the packet.

use abi_stable::{std_types::RSlice, StableAbi};

/// TCP header flags (`th_flags`), including AE (accurate ECN).
pub mod th {
    /// TH_FIN: no more data from the sender.
    pub const FIN: u16 = 0x01;
    /// TH_SYN: synchronize sequence numbers.
    pub const SYN: u16 = 0x02;
    /// TH_RST: reset the connection.
    pub const RST: u16 = 0x04;
    /// TH_PUSH: push (set on the segment that empties the send buffer).
    pub const PUSH: u16 = 0x08;
    /// TH_ACK: the acknowledgment field is significant.
    pub const ACK: u16 = 0x10;
    /// TH_URG: the urgent pointer is significant.
    pub const URG: u16 = 0x20;
    /// TH_ECE: ECN-Echo (RFC 3168).
    pub const ECE: u16 = 0x40;
    /// TH_CWR: congestion window reduced (RFC 3168).
    pub const CWR: u16 = 0x80;
    /// TH_AE: accurate-ECN flag (the former NS bit). plugtcp does not negotiate AccECN.
    pub const AE: u16 = 0x100;
}

/// IP ECN codepoints (RFC 3168).
pub mod ecn {
    /// Not-ECT: the transport does not use ECN.
    pub const NOT_ECT: u8 = 0;
    /// ECT(1): ECN-capable transport, codepoint 1.
    pub const ECT1: u8 = 1;
    /// ECT(0): ECN-capable transport, codepoint 0 (what RFC 3168 senders set).
    pub const ECT0: u8 = 2;
    /// CE: congestion experienced (set by a router).
    pub const CE: u8 = 3;
}

/// Which options a [`TcpOpts`] carries.
///
/// On output the host writes MSS, WSCALE, SACKPERM and FASTOPEN only on a SYN, SACK only on
/// a segment without SYN, TSTAMP and SIGNATURE on any (the host computes the digest with
/// the connection's key; ENOENT without one). On input the host sets the bit of every well-formed option it parsed.
pub mod to {
    /// TOF_MSS: maximum segment size (`TcpOpts::mss`).
    pub const MSS: u16 = 0x0001;
    /// TOF_SCALE: window scale shift (`TcpOpts::wscale`).
    pub const WSCALE: u16 = 0x0002;
    /// TOF_SACKPERM: SACK permitted.
    pub const SACKPERM: u16 = 0x0004;
    /// TOF_TS: timestamps (`TcpOpts::tsval`, `TcpOpts::tsecr`).
    pub const TSTAMP: u16 = 0x0008;
    /// TOF_SACK: SACK blocks (`TcpOpts::sacks`, `TcpOpts::nsacks`).
    pub const SACK: u16 = 0x0010;
    /// TOF_FASTOPEN: TCP Fast Open option (RFC 7413), its cookie in `TcpOpts::tfo_cookie`
    /// (`tfo_len` bytes; 0 is a cookie request). On output only on a SYN.
    pub const FASTOPEN: u16 = 0x0020;
    /// TOF_SIGNATURE: TCP-MD5 signature (RFC 2385): a stack adds it to every segment of a
    /// connection with `tf::SIGNATURE` and leaves 20 option bytes for it.
    pub const SIGNATURE: u16 = 0x0040;
}

/// One SACK block (RFC 2018): the sequence range `[start, end)`.
#[repr(C)]
#[derive(Copy, Clone, Default, PartialEq, Eq, Debug, StableAbi)]
pub struct SackBlock {
    /// Left edge: first sequence number of the block.
    pub start: u32,
    /// Right edge: the sequence number after the block's last byte.
    pub end: u32,
}

/// TCP options of one segment (FreeBSD `struct tcpopt`).
#[repr(C)]
#[derive(Copy, Clone, Default, PartialEq, Eq, Debug, StableAbi)]
pub struct TcpOpts {
    /// `to::*` bits: which fields below are present.
    pub flags: u16,
    /// MSS option value, bytes (`to::MSS`).
    pub mss: u16,
    /// Window scale shift (`to::WSCALE`); the host clamps a received one to 14.
    pub wscale: u8,
    /// How many of `sacks` are valid (`to::SACK`); at most 4 are kept. On output the host
    /// writes as many as fit in the 40 option bytes (3 beside timestamps).
    pub nsacks: u8,
    /// Timestamp value (`to::TSTAMP`). Ours is the host clock in milliseconds plus
    /// `Tcpcb::ts_offset` (FreeBSD tcp_ts_getticks at hz=1000).
    pub tsval: u32,
    /// Timestamp echo reply (`to::TSTAMP`).
    pub tsecr: u32,
    /// SACK blocks (`to::SACK`), the first `nsacks` of them valid.
    pub sacks: [SackBlock; 4],
    /// TCP Fast Open cookie length (`to::FASTOPEN`): 0 for a cookie request, else 4 to 16
    /// and even (RFC 7413 4.1.1; the host drops other lengths on input as malformed).
    pub tfo_len: u8,
    /// TCP Fast Open cookie, the first `tfo_len` bytes valid (FreeBSD to_tfo_cookie).
    pub tfo_cookie: [u8; 16],
}

impl TcpOpts {
    /// Whether option `bit` (a `to::*` constant) is present.
    #[inline]
    pub fn has(&self, bit: u16) -> bool {
        self.flags & bit != 0
    }

    /// The TCP Fast Open cookie (`tfo_cookie[..tfo_len]`, empty for a cookie request).
    #[inline]
    pub fn tfo_cookie(&self) -> &[u8] {
        &self.tfo_cookie[..(self.tfo_len as usize).min(16)]
    }

    /// The valid SACK blocks (`sacks[..nsacks]`, at most 4).
    #[inline]
    pub fn sack_blocks(&self) -> &[SackBlock] {
        &self.sacks[..(self.nsacks as usize).min(4)]
    }
}

/// An incoming segment after the host's parsing and demux: checksums verified, options
/// parsed, for this connection's 4-tuple. What a stack gets in `do_segment`.
///
/// With LRO (inside a receive batch) one `SegIn` may stand for several packets merged: a
/// payload longer than `t_maxseg`, the header fields and options of the first packet, PSH
/// only if the last had it. The stack is not told how many packets it merged. A packet that
/// crosses a receive-buffer chunk may also be split into two `SegIn`s. See the stack
/// module's contract.
#[repr(C)]
#[derive(StableAbi)]
pub struct SegIn<'a> {
    /// Sequence number of the first byte (of the SYN, if set).
    pub seq: u32,
    /// Acknowledgment number (meaningful with `th::ACK`).
    pub ack: u32,
    /// `th::*` flags.
    pub flags: u16,
    /// Window field as on the wire (not yet scaled).
    pub win: u16,
    /// Urgent pointer as on the wire: an offset from `seq` (meaningful with `th::URG`).
    pub urp: u16,
    /// IP ECN codepoint of the packet.
    pub ip_ecn: u8,
    /// Parsed TCP options.
    pub opts: TcpOpts,
    /// The payload, borrowed for the duration of the call only. With LRO it may point into
    /// the connection's receive buffer, exactly where `HostOps::rcv_write` at `rcv_nxt`
    /// would put it (the write then copies nothing).
    pub payload: RSlice<'a, u8>,
}

/// A segment the stack asks the host to send. Payload is `data_len` bytes of the send buffer
/// starting `data_off` bytes after its front (the front is snd_una).
///
/// TSO (FreeBSD `m_pkthdr.tso_segsz`): when `tso_segsz` is non-zero and `data_len` exceeds
/// it, the host cuts the segment into packets of `tso_segsz` payload bytes (the last one
/// shorter), each with the same header and options but its own sequence number, PSH and
/// FIN only on the last. Stacks may do this only while `Tcpcb::t_tsomax_segs > 1`, for at
/// most that many packets, and never with SYN, URG or CWR.
#[repr(C)]
#[derive(Copy, Clone, Default, PartialEq, Eq, Debug, StableAbi)]
pub struct SegOut {
    /// Sequence number (of the SYN, if set; else of the first payload byte, or where a
    /// FIN-only or pure ACK segment sits).
    pub seq: u32,
    /// Acknowledgment number (put on the wire as given; 0 without `th::ACK` by convention).
    pub ack: u32,
    /// `th::*` flags, as they go on the wire (the host adds none).
    pub flags: u16,
    /// Window field to put on the wire (already shifted by rcv_scale).
    pub win: u16,
    /// Urgent pointer field (an offset from `seq`; meaningful with `th::URG`).
    pub urp: u16,
    /// IP ECN codepoint to set (ECT(0) on data when ECN is on).
    pub ip_ecn: u8,
    /// Options to write (see [`to`] for which the host writes on which segments).
    pub opts: TcpOpts,
    /// Where the payload starts: bytes after the front of the send buffer. The front is the
    /// first unacknowledged data byte, which is `snd_una`, or `snd_una + 1` while our SYN is
    /// unacknowledged (the SYN and FIN take sequence space, not buffer bytes). The host only
    /// checks that the bytes are in the buffer (EINVAL otherwise).
    pub data_off: u32,
    /// Payload bytes (0 for a segment without data).
    pub data_len: u32,
    /// Payload bytes per packet when the host segments this one (0: one packet).
    pub tso_segsz: u32,
}
