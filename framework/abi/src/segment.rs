//! Segment descriptors: a parsed incoming segment, and an outgoing segment the host builds.
//!
//! The host parses and checksums; a stack sees header fields and a borrowed payload, and
//! asks for output by sequence number and send-buffer offset, so payload bytes are copied
//! once, from the send buffer into the packet.

use abi_stable::{std_types::RSlice, StableAbi};

/// TCP header flags (`th_flags`), including AE (accurate ECN).
pub mod th {
    pub const FIN: u16 = 0x01;
    pub const SYN: u16 = 0x02;
    pub const RST: u16 = 0x04;
    pub const PUSH: u16 = 0x08;
    pub const ACK: u16 = 0x10;
    pub const URG: u16 = 0x20;
    pub const ECE: u16 = 0x40;
    pub const CWR: u16 = 0x80;
    pub const AE: u16 = 0x100;
}

/// IP ECN codepoints (RFC 3168).
pub mod ecn {
    pub const NOT_ECT: u8 = 0;
    pub const ECT1: u8 = 1;
    pub const ECT0: u8 = 2;
    pub const CE: u8 = 3;
}

/// Which options a [`TcpOpts`] carries.
pub mod to {
    pub const MSS: u16 = 0x0001;
    pub const WSCALE: u16 = 0x0002;
    pub const SACKPERM: u16 = 0x0004;
    pub const TSTAMP: u16 = 0x0008;
    pub const SACK: u16 = 0x0010;
    pub const FASTOPEN: u16 = 0x0020;
    pub const SIGNATURE: u16 = 0x0040;
}

#[repr(C)]
#[derive(Copy, Clone, Default, PartialEq, Eq, Debug, StableAbi)]
pub struct SackBlock {
    pub start: u32,
    pub end: u32,
}

/// TCP options of one segment (FreeBSD `struct tcpopt`).
#[repr(C)]
#[derive(Copy, Clone, Default, PartialEq, Eq, Debug, StableAbi)]
pub struct TcpOpts {
    /// `to::*` bits: which fields below are present.
    pub flags: u16,
    pub mss: u16,
    pub wscale: u8,
    pub nsacks: u8,
    pub tsval: u32,
    pub tsecr: u32,
    pub sacks: [SackBlock; 4],
}

impl TcpOpts {
    #[inline]
    pub fn has(&self, bit: u16) -> bool {
        self.flags & bit != 0
    }

    #[inline]
    pub fn sack_blocks(&self) -> &[SackBlock] {
        &self.sacks[..(self.nsacks as usize).min(4)]
    }
}

/// An incoming segment after the host's parsing and demux.
#[repr(C)]
#[derive(StableAbi)]
pub struct SegIn<'a> {
    pub seq: u32,
    pub ack: u32,
    pub flags: u16,
    /// Window field as on the wire (not yet scaled).
    pub win: u16,
    pub urp: u16,
    /// IP ECN codepoint of the packet.
    pub ip_ecn: u8,
    pub opts: TcpOpts,
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
    pub seq: u32,
    pub ack: u32,
    pub flags: u16,
    /// Window field to put on the wire (already shifted by rcv_scale).
    pub win: u16,
    pub urp: u16,
    /// IP ECN codepoint to set (ECT(0) on data when ECN is on).
    pub ip_ecn: u8,
    pub opts: TcpOpts,
    pub data_off: u32,
    pub data_len: u32,
    /// Payload bytes per packet when the host segments this one (0: one packet).
    pub tso_segsz: u32,
}
