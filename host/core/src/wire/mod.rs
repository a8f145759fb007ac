//! Wire format: parse received IPv4/IPv6 + TCP packets and build transmitted ones.
//!
//! The host runs this per packet, so nothing here allocates: parsing borrows from the
//! packet, building writes into a caller-given buffer. Header fields are read through
//! etherparse's slice types; TCP options are parsed by hand with FreeBSD `tcp_dooptions`
//! semantics (etherparse's option iterator stops with an error instead), and written in
//! FreeBSD `tcp_addoptions` order so traces look like FreeBSD's.
//!
//! Checksums run directly on the packet bytes: the TCP segment is contiguous both in a
//! received packet and in a built one (payload is summed as it is copied in), so one pass
//! over one slice suffices and nothing is copied for it.
//!
//! One file a layer, as smoltcp's `wire`: [`ip`] (IPv4/IPv6 headers, parse and wrap),
//! [`tcp`] (the TCP header, build), [`options`] (TCP options), [`checksum`] (RFC 1071).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use abi_stable::std_types::RSlice;
use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice};

use plugtcp_abi::segment::{th, to, SackBlock, SegIn, SegOut, TcpOpts};
use plugtcp_abi::Errno;

mod checksum;
mod ip;
mod options;
mod signature;
mod tcp;
#[cfg(test)]
mod tests;

pub use checksum::*;
pub use ip::*;
pub use options::*;
pub use signature::*;
pub use tcp::*;

/// Largest IP + TCP header `build` writes: IPv6 (40) + TCP with 40 option bytes (60).
pub const MAX_HEADER: usize = IPV6_HLEN + TCP_MAX_HLEN;

const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_HLEN: usize = 20;
const TCP_MAX_HLEN: usize = 60;
/// TCP_MAXOLEN: room for options in a TCP header.
const TCP_MAXOLEN: usize = TCP_MAX_HLEN - TCP_HLEN;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;

/// Why a received packet was dropped before reaching a stack.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum DropReason {
    /// IP version nibble neither 4 nor 6.
    BadVersion,
    /// Packet shorter than its headers or its IP length field say.
    Truncated,
    /// IP length fields inconsistent (IHL < 5, total length < IHL, IPv6 payload length 0).
    BadLength,
    /// IPv4 header checksum wrong.
    BadIpChecksum,
    /// IPv4 fragment or IPv6 fragment header: reassembled by `ipfrag`, and counted under
    /// this reason when reassembly drops it (malformed, overlapping, over a limit).
    Fragment,
    /// IPv6 routing header with segments left: this host is not the final destination.
    BadExtHeader,
    /// Upper-layer protocol is not TCP.
    NotTcp,
    /// TCP checksum (with pseudo-header) wrong.
    BadTcpChecksum,
    /// TCP data offset below 5 or past the end of the segment.
    BadDataOffset,
}

impl DropReason {
    /// Every reason, for registering metrics up front.
    pub const ALL: [DropReason; 9] = [
        DropReason::BadVersion,
        DropReason::Truncated,
        DropReason::BadLength,
        DropReason::BadIpChecksum,
        DropReason::Fragment,
        DropReason::BadExtHeader,
        DropReason::NotTcp,
        DropReason::BadTcpChecksum,
        DropReason::BadDataOffset,
    ];

    /// Metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            DropReason::BadVersion => "bad_version",
            DropReason::Truncated => "truncated",
            DropReason::BadLength => "bad_length",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::Fragment => "fragment",
            DropReason::BadExtHeader => "bad_ext_header",
            DropReason::NotTcp => "not_tcp",
            DropReason::BadTcpChecksum => "bad_tcp_checksum",
            DropReason::BadDataOffset => "bad_data_offset",
        }
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
