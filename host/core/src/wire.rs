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

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use abi_stable::std_types::RSlice;
use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice};

use plugtcp_abi::segment::{th, to, SackBlock, SegIn, SegOut, TcpOpts};
use plugtcp_abi::Errno;

/// RFC 1071 sums over byte slices. Hand-written because `plugtcp bench bulk` spent most of
/// its time in checksums: 16-bit words are added into sixteen 32-bit lanes (blocks of at most
/// 64 KiB, so no lane can overflow), which the compiler vectorises: 37-44 GB/s on the
/// development machine against 22 GB/s for the internet-checksum crate and less for
/// etherparse's 16-bit loop. A byte left over from an odd-length slice pairs with the next
/// slice's first byte.
#[derive(Clone, Copy)]
struct Sum {
    acc: u64,
    odd: Option<u8>,
}

/// Sum of `bytes` (even length) as 16-bit native-endian words, not yet folded. Inlined:
/// headers and pseudo-header pieces take the short path many times per packet, and a call
/// per piece cost more than the summing.
#[inline(always)]
fn sum_words(bytes: &[u8]) -> u64 {
    if bytes.len() < 128 {
        // Headers and pseudo-header pieces: the lane setup would cost more than it saves.
        let words = bytes.chunks_exact(4);
        let tail = match *words.remainder() {
            [a, b] => u16::from_ne_bytes([a, b]) as u64,
            _ => 0,
        };
        let mut acc = tail;
        for w in words {
            acc += u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64;
        }
        return acc;
    }
    sum_long(bytes)
}

/// Payloads: the vector loop, in its AVX2 build when the CPU has it.
#[inline(never)]
fn sum_long(bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above (std caches the answer).
        return unsafe { sum_lanes_avx2(bytes) };
    }
    sum_lanes(bytes)
}

/// The same loop compiled for 256-bit vectors: 1.7x the SSE2 build's speed on the
/// development machine (88 against 53 GB/s on a hot 64 KiB buffer); AVX-512 gained
/// nothing more.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_lanes_avx2(bytes: &[u8]) -> u64 {
    sum_lanes(bytes)
}

#[inline(always)]
fn sum_lanes(bytes: &[u8]) -> u64 {
    let mut total = 0u64;
    for block in bytes.chunks(65536) {
        let mut lanes = [0u32; 16];
        let mut rows = block.chunks_exact(32);
        for row in &mut rows {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane += u16::from_ne_bytes([row[2 * i], row[2 * i + 1]]) as u32;
            }
        }
        total += lanes.iter().map(|&l| l as u64).sum::<u64>();
        let mut tail = rows.remainder().chunks_exact(2);
        total += (&mut tail)
            .map(|w| u16::from_ne_bytes([w[0], w[1]]) as u64)
            .sum::<u64>();
    }
    total
}

impl Sum {
    #[inline(always)]
    fn new() -> Self {
        Sum { acc: 0, odd: None }
    }

    /// Pairs a pending odd byte with the first of `bytes`; returns the rest, even-length,
    /// leaving its own last byte pending when it is odd.
    #[inline(always)]
    fn align<'a>(&mut self, mut bytes: &'a [u8]) -> &'a [u8] {
        if let (Some(o), Some((&first, rest))) = (self.odd, bytes.split_first()) {
            self.acc += u16::from_ne_bytes([o, first]) as u64;
            self.odd = None;
            bytes = rest;
        }
        if bytes.len() % 2 == 1 {
            let (body, last) = bytes.split_at(bytes.len() - 1);
            self.odd = Some(last[0]);
            bytes = body;
        }
        bytes
    }

    #[inline(always)]
    fn add(mut self, bytes: &[u8]) -> Self {
        let body = self.align(bytes);
        self.acc += sum_words(body);
        self
    }

    #[inline(always)]
    fn add_arr<const N: usize>(self, bytes: [u8; N]) -> Self {
        self.add(&bytes)
    }

    /// Copies `src` into `dst` (same length) and adds it (summing the copy while it is hot
    /// in cache is as fast as a fused loop, and simpler).
    #[inline(always)]
    fn copy_add(&mut self, dst: &mut [u8], src: &[u8]) {
        dst.copy_from_slice(src);
        let body = self.align(dst);
        self.acc += sum_words(body);
    }

    /// The complement of the sum as a native-endian word (the sum runs over native-endian
    /// words, so `to_ne_bytes` gives the field in wire order); 0 when verifying a good packet.
    #[inline(always)]
    fn ones_complement(&self) -> u16 {
        let mut s = self.acc + self.odd.map_or(0, |o| u16::from_ne_bytes([o, 0]) as u64);
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
}

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

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_MAXSEG: u8 = 2;
const TCPOPT_WINDOW: u8 = 3;
const TCPOPT_SACK_PERMITTED: u8 = 4;
const TCPOPT_SACK: u8 = 5;
const TCPOPT_TIMESTAMP: u8 = 8;
const TCPOPT_SIGNATURE: u8 = 19;
const TCPOPT_FAST_OPEN: u8 = 34;

const TCPOLEN_MAXSEG: usize = 4;
const TCPOLEN_WINDOW: usize = 3;
const TCPOLEN_SACK_PERMITTED: usize = 2;
const TCPOLEN_SACKHDR: usize = 2;
const TCPOLEN_SACK: usize = 8;
const TCPOLEN_TIMESTAMP: usize = 10;
const TCPOLEN_SIGNATURE: usize = 18;
const TCPOLEN_FAST_OPEN_EMPTY: usize = 2;
/// Cookie of 4..16 bytes (RFC 7413 4.1.1), as FreeBSD checks it.
const TCPOLEN_FAST_OPEN_MIN: usize = 2 + 4;
const TCPOLEN_FAST_OPEN_MAX: usize = 2 + 16;

/// RFC 7323 2.3: larger shift counts are treated as 14.
const TCP_MAX_WINSHIFT: u8 = 14;

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

/// A received TCP segment, fields in host order, payload borrowed from the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IP ECN codepoint (`ecn::*`).
    pub ecn: u8,
    pub ttl_or_hlim: u8,
    pub seq: u32,
    pub ack: u32,
    /// `th::*` bits, including ECE, CWR and AE.
    pub flags: u16,
    pub win: u16,
    pub urp: u16,
    pub opts: TcpOpts,
    pub payload: &'a [u8],
}

impl Parsed<'_> {
    /// The descriptor a stack sees.
    pub fn seg(&self) -> SegIn<'_> {
        SegIn {
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            win: self.win,
            urp: self.urp,
            ip_ecn: self.ecn,
            opts: self.opts,
            payload: RSlice::from_slice(self.payload),
        }
    }
}

/// Parse and validate one IP packet (no link header). Bytes past the IP length (link
/// padding) are ignored, as FreeBSD's ip_input trims them.
pub fn parse(pkt: &[u8]) -> Result<Parsed<'_>, DropReason> {
    parse_unverified(pkt)?.verify()
}

/// A packet whose headers are parsed and checked but whose TCP checksum is not verified
/// yet: the receive path first finds where the payload goes, then verifies it while copying
/// it there ([`Unverified::verify_into`]), one pass instead of two. Nothing may act on it
/// before it is verified.
pub struct Unverified<'a> {
    parsed: Parsed<'a>,
    /// Pseudo-header and TCP header, summed.
    header_sum: Sum,
}

impl<'a> Unverified<'a> {
    /// The headers, for demux and placement decisions only.
    pub fn headers(&self) -> &Parsed<'a> {
        &self.parsed
    }

    pub fn verify(self) -> Result<Parsed<'a>, DropReason> {
        let sum = self.header_sum.add(self.parsed.payload);
        if sum.ones_complement() != 0 {
            return Err(DropReason::BadTcpChecksum);
        }
        Ok(self.parsed)
    }

    /// Verifies while copying the payload into `head` and then `tail` (their lengths add
    /// up to the payload's). On a bad checksum they hold the unverified bytes: they must
    /// be space nobody reads yet.
    pub fn verify_into(self, head: &mut [u8], tail: &mut [u8]) -> Result<Parsed<'a>, DropReason> {
        let payload = self.parsed.payload;
        if head.len() + tail.len() != payload.len() {
            return Err(DropReason::Truncated);
        }
        let (a, b) = payload.split_at(head.len());
        let mut sum = self.header_sum;
        sum.copy_add(head, a);
        sum.copy_add(tail, b);
        if sum.ones_complement() != 0 {
            return Err(DropReason::BadTcpChecksum);
        }
        Ok(self.parsed)
    }
}

/// [`parse`] without the TCP checksum (see [`Unverified`]).
/// Whether an IPv4 header (options included) carries a correct checksum.
pub fn ip_header_sum_ok(hdr: &[u8]) -> bool {
    Sum::new().add(hdr).ones_complement() == 0
}

/// Whether the Internet checksum over `parts` (one message, pseudo-header first) is right:
/// the parts with their checksum field sum to all ones.
pub fn inet_checksum_ok(parts: &[&[u8]]) -> bool {
    let mut s = Sum::new();
    for p in parts {
        s = s.add(p);
    }
    s.ones_complement() == 0
}

/// The checksum field (wire order) for `parts` (one message, its checksum field zero).
pub fn inet_checksum(parts: &[&[u8]]) -> [u8; 2] {
    let mut s = Sum::new();
    for p in parts {
        s = s.add(p);
    }
    s.ones_complement().to_ne_bytes()
}

/// The checksum field (wire order) for an IPv4 header whose checksum field is zero.
pub fn ip_header_checksum(hdr: &[u8]) -> [u8; 2] {
    Sum::new().add(hdr).ones_complement().to_ne_bytes()
}

pub fn parse_unverified(pkt: &[u8]) -> Result<Unverified<'_>, DropReason> {
    match pkt.first().map(|b| b >> 4) {
        None => Err(DropReason::Truncated),
        Some(4) => parse_v4(pkt),
        Some(6) => parse_v6(pkt),
        Some(_) => Err(DropReason::BadVersion),
    }
}

fn parse_v4(pkt: &[u8]) -> Result<Unverified<'_>, DropReason> {
    use etherparse::err::ipv4::{HeaderError, HeaderSliceError};
    let ip = Ipv4HeaderSlice::from_slice(pkt).map_err(|e| match e {
        HeaderSliceError::Len(_) => DropReason::Truncated,
        HeaderSliceError::Content(HeaderError::UnexpectedVersion { .. }) => DropReason::BadVersion,
        HeaderSliceError::Content(HeaderError::HeaderLengthSmallerThanHeader { .. }) => {
            DropReason::BadLength
        }
    })?;
    let hlen = ip.slice().len();
    // A correct header sums to 0xffff, so its complement is 0.
    if Sum::new().add(ip.slice()).ones_complement() != 0 {
        return Err(DropReason::BadIpChecksum);
    }
    let total = usize::from(ip.total_len());
    if total < hlen {
        return Err(DropReason::BadLength);
    }
    if total > pkt.len() {
        return Err(DropReason::Truncated);
    }
    if ip.more_fragments() || ip.fragments_offset().value() != 0 {
        return Err(DropReason::Fragment);
    }
    if ip.protocol().0 != IPPROTO_TCP {
        return Err(DropReason::NotTcp);
    }
    let src = ip.source();
    let dst = ip.destination();
    let tcp = &pkt[hlen..total];
    let pseudo = Sum::new()
        .add_arr(src)
        .add_arr(dst)
        .add_arr([0, IPPROTO_TCP])
        // tcp.len() < 65536 as total_len is a u16.
        .add_arr((tcp.len() as u16).to_be_bytes());
    parse_tcp(
        tcp,
        pseudo,
        IpAddr::V4(Ipv4Addr::from(src)),
        IpAddr::V4(Ipv4Addr::from(dst)),
        ip.ecn().value(),
        ip.ttl(),
    )
}

fn parse_v6(pkt: &[u8]) -> Result<Unverified<'_>, DropReason> {
    use etherparse::err::ipv6::HeaderSliceError;
    let ip = Ipv6HeaderSlice::from_slice(pkt).map_err(|e| match e {
        HeaderSliceError::Len(_) => DropReason::Truncated,
        HeaderSliceError::Content(_) => DropReason::BadVersion,
    })?;
    let plen = usize::from(ip.payload_length());
    // Zero means a jumbogram (RFC 2675), which TCP here does not take.
    if plen == 0 {
        return Err(DropReason::BadLength);
    }
    let end = IPV6_HLEN + plen;
    if end > pkt.len() {
        return Err(DropReason::Truncated);
    }
    let mut next = ip.next_header().0;
    let mut off = IPV6_HLEN;
    while next != IPPROTO_TCP {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                // Routing headers need 4 bytes (segments left at offset 3), others 2.
                let Some(hdr) = pkt.get(off..off + 4).filter(|_| off + 4 <= end) else {
                    return Err(DropReason::Truncated);
                };
                // RFC 8200 4.4: with segments left the packet is still in transit.
                if next == IPPROTO_ROUTING && hdr[3] != 0 {
                    return Err(DropReason::BadExtHeader);
                }
                let len = (usize::from(hdr[1]) + 1) * 8;
                if off + len > end {
                    return Err(DropReason::Truncated);
                }
                next = hdr[0];
                off += len;
            }
            IPPROTO_FRAGMENT => return Err(DropReason::Fragment),
            _ => return Err(DropReason::NotTcp),
        }
    }
    let src = ip.source();
    let dst = ip.destination();
    let tcp = &pkt[off..end];
    let pseudo = Sum::new()
        .add_arr(src)
        .add_arr(dst)
        .add_arr((tcp.len() as u32).to_be_bytes())
        .add_arr([0, 0, 0, IPPROTO_TCP]);
    parse_tcp(
        tcp,
        pseudo,
        IpAddr::V6(Ipv6Addr::from(src)),
        IpAddr::V6(Ipv6Addr::from(dst)),
        ip.ecn().value(),
        ip.hop_limit(),
    )
}

/// `tcp` is exactly the TCP segment (header + payload) per the IP length fields.
fn parse_tcp(
    tcp: &[u8],
    pseudo: Sum,
    src: IpAddr,
    dst: IpAddr,
    ecn: u8,
    ttl_or_hlim: u8,
) -> Result<Unverified<'_>, DropReason> {
    use etherparse::err::tcp::HeaderSliceError;
    if tcp.len() < TCP_HLEN {
        return Err(DropReason::Truncated);
    }
    // Both errors mean the offset is below 5 or past the segment (tcps_rcvbadoff); FreeBSD
    // checks the checksum first, so a bad sum is what such a packet counts as.
    let th = TcpHeaderSlice::from_slice(tcp).map_err(|e| match e {
        HeaderSliceError::Len(_) | HeaderSliceError::Content(_) => {
            if pseudo.add(tcp).ones_complement() != 0 {
                DropReason::BadTcpChecksum
            } else {
                DropReason::BadDataOffset
            }
        }
    })?;
    let raw = th.slice();
    let flags = (u16::from(raw[12] & 0x01) << 8) | u16::from(raw[13]);
    Ok(Unverified {
        header_sum: pseudo.add(raw),
        parsed: Parsed {
            src,
            dst,
            src_port: th.source_port(),
            dst_port: th.destination_port(),
            ecn,
            ttl_or_hlim,
            seq: th.sequence_number(),
            ack: th.acknowledgment_number(),
            flags,
            win: th.window_size(),
            urp: th.urgent_pointer(),
            opts: parse_options(th.options()),
            payload: &tcp[raw.len()..],
        },
    })
}

/// FreeBSD `tcp_dooptions`: a malformed length ends option processing but keeps the
/// segment; options with a wrong length for their kind are skipped. Whether an option is
/// legal on this segment (SYN-only ones) is left to the stack.
fn parse_options(mut cp: &[u8]) -> TcpOpts {
    let mut o = TcpOpts::default();
    while let Some(&kind) = cp.first() {
        let optlen = match kind {
            TCPOPT_EOL => break,
            TCPOPT_NOP => 1,
            _ => match cp.get(1) {
                Some(&l) if l >= 2 && usize::from(l) <= cp.len() => usize::from(l),
                _ => break,
            },
        };
        let body = &cp[2.min(optlen)..optlen];
        match kind {
            TCPOPT_MAXSEG if optlen == TCPOLEN_MAXSEG => {
                o.flags |= to::MSS;
                o.mss = u16::from_be_bytes([body[0], body[1]]);
            }
            TCPOPT_WINDOW if optlen == TCPOLEN_WINDOW => {
                o.flags |= to::WSCALE;
                o.wscale = body[0].min(TCP_MAX_WINSHIFT);
            }
            TCPOPT_SACK_PERMITTED if optlen == TCPOLEN_SACK_PERMITTED => {
                o.flags |= to::SACKPERM;
            }
            TCPOPT_TIMESTAMP if optlen == TCPOLEN_TIMESTAMP => {
                o.flags |= to::TSTAMP;
                o.tsval = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                o.tsecr = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            }
            TCPOPT_SACK
                if optlen > TCPOLEN_SACKHDR
                    && (optlen - TCPOLEN_SACKHDR).is_multiple_of(TCPOLEN_SACK) =>
            {
                o.flags |= to::SACK;
                let mut n = 0;
                for (slot, b) in o.sacks.iter_mut().zip(body.chunks_exact(TCPOLEN_SACK)) {
                    *slot = SackBlock {
                        start: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        end: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    };
                    n += 1;
                }
                o.nsacks = n;
            }
            TCPOPT_SIGNATURE if optlen == TCPOLEN_SIGNATURE => o.flags |= to::SIGNATURE,
            TCPOPT_FAST_OPEN
                if optlen == TCPOLEN_FAST_OPEN_EMPTY
                    || (TCPOLEN_FAST_OPEN_MIN..=TCPOLEN_FAST_OPEN_MAX).contains(&optlen) =>
            {
                o.flags |= to::FASTOPEN;
            }
            _ => {}
        }
        cp = &cp[optlen..];
    }
    o
}

/// Why `build` refused to write a packet.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum BuildError {
    /// `buf` is shorter than the packet.
    BufferTooSmall,
    /// Source and destination are not of the same address family.
    AddrFamilyMismatch,
    /// The payload slices do not add up to `seg.data_len`.
    PayloadLenMismatch,
    /// The packet would not fit the IP length field.
    TooLong,
    /// TCP-MD5 (`to::SIGNATURE`): the host has no keys to sign with.
    UnsupportedOption,
}

impl BuildError {
    pub fn errno(&self) -> Errno {
        match self {
            BuildError::BufferTooSmall => Errno::ENOBUFS,
            BuildError::AddrFamilyMismatch => Errno::EAFNOSUPPORT,
            BuildError::PayloadLenMismatch | BuildError::TooLong => Errno::EINVAL,
            BuildError::UnsupportedOption => Errno::EOPNOTSUPP,
        }
    }
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BuildError::BufferTooSmall => "buffer too small",
            BuildError::AddrFamilyMismatch => "address family mismatch",
            BuildError::PayloadLenMismatch => "payload length mismatch",
            BuildError::TooLong => "packet too long",
            BuildError::UnsupportedOption => "unsupported TCP option",
        })
    }
}

/// Option bytes `build` writes for `opts` on a SYN or non-SYN segment, padding included,
/// so a stack can take them off its payload size (FreeBSD's t_maxseg excludes options).
/// `to::SIGNATURE` is not counted: `build` refuses it.
pub fn options_len(opts: &TcpOpts, syn: bool) -> usize {
    let mut scratch = [0u8; TCP_MAXOLEN];
    add_options(opts, syn, &mut scratch)
}

/// Which option bits go on the wire. SYN-only options (MSS, window scale, SACK-permitted,
/// TFO) are sent only on a SYN, SACK blocks only without it, as FreeBSD tcp_output
/// decides; an empty SACK list sends no SACK option.
fn wire_flags(opts: &TcpOpts, syn: bool) -> u16 {
    let mut f = opts.flags & (to::TSTAMP | to::SIGNATURE);
    if syn {
        f |= opts.flags & (to::MSS | to::WSCALE | to::SACKPERM | to::FASTOPEN);
    } else if opts.has(to::SACK) && opts.nsacks > 0 {
        f |= to::SACK;
    }
    f
}

/// Pad with NOPs while `need(optlen)` holds.
fn pad_nop(out: &mut [u8; TCP_MAXOLEN], optlen: &mut usize, need: impl Fn(usize) -> bool) {
    while need(*optlen) && *optlen < TCP_MAXOLEN {
        out[*optlen] = TCPOPT_NOP;
        *optlen += 1;
    }
}

/// FreeBSD `tcp_addoptions`: same order (MSS, WS, SACK-permitted, TS, SACK, TFO), same
/// alignment NOPs, EOL then zero padding to 4 bytes. Returns the option length.
/// Ignores `to::SIGNATURE` (the caller rejects it).
fn add_options(opts: &TcpOpts, syn: bool, out: &mut [u8; TCP_MAXOLEN]) -> usize {
    let f = wire_flags(opts, syn);
    let mut n = 0usize;
    if f & to::MSS != 0 {
        pad_nop(out, &mut n, |l| l % 4 != 0);
        if TCP_MAXOLEN - n >= TCPOLEN_MAXSEG {
            let m = opts.mss.to_be_bytes();
            out[n..n + 4].copy_from_slice(&[TCPOPT_MAXSEG, TCPOLEN_MAXSEG as u8, m[0], m[1]]);
            n += TCPOLEN_MAXSEG;
        }
    }
    if f & to::WSCALE != 0 {
        pad_nop(out, &mut n, |l| l == 0 || l % 2 != 1);
        if TCP_MAXOLEN - n >= TCPOLEN_WINDOW {
            out[n..n + 3].copy_from_slice(&[TCPOPT_WINDOW, TCPOLEN_WINDOW as u8, opts.wscale]);
            n += TCPOLEN_WINDOW;
        }
    }
    if f & to::SACKPERM != 0 {
        pad_nop(out, &mut n, |l| l % 2 != 0);
        if TCP_MAXOLEN - n >= TCPOLEN_SACK_PERMITTED {
            out[n..n + 2].copy_from_slice(&[TCPOPT_SACK_PERMITTED, TCPOLEN_SACK_PERMITTED as u8]);
            n += TCPOLEN_SACK_PERMITTED;
        }
    }
    if f & to::TSTAMP != 0 {
        pad_nop(out, &mut n, |l| l == 0 || l % 4 != 2);
        if TCP_MAXOLEN - n >= TCPOLEN_TIMESTAMP {
            out[n] = TCPOPT_TIMESTAMP;
            out[n + 1] = TCPOLEN_TIMESTAMP as u8;
            out[n + 2..n + 6].copy_from_slice(&opts.tsval.to_be_bytes());
            out[n + 6..n + 10].copy_from_slice(&opts.tsecr.to_be_bytes());
            n += TCPOLEN_TIMESTAMP;
        }
    }
    if f & to::SACK != 0 {
        pad_nop(out, &mut n, |l| l == 0 || l % 4 != 2);
        if TCP_MAXOLEN - n >= TCPOLEN_SACKHDR + TCPOLEN_SACK {
            let nblk = opts
                .sack_blocks()
                .len()
                .min((TCP_MAXOLEN - n - TCPOLEN_SACKHDR) / TCPOLEN_SACK);
            out[n] = TCPOPT_SACK;
            out[n + 1] = (TCPOLEN_SACKHDR + nblk * TCPOLEN_SACK) as u8;
            n += TCPOLEN_SACKHDR;
            for b in &opts.sack_blocks()[..nblk] {
                out[n..n + 4].copy_from_slice(&b.start.to_be_bytes());
                out[n + 4..n + 8].copy_from_slice(&b.end.to_be_bytes());
                n += TCPOLEN_SACK;
            }
        }
    }
    if f & to::FASTOPEN != 0 && TCP_MAXOLEN - n >= TCPOLEN_FAST_OPEN_EMPTY {
        // No cookie field in TcpOpts: this is the client's cookie request (RFC 7413 4.1.1).
        out[n..n + 2].copy_from_slice(&[TCPOPT_FAST_OPEN, TCPOLEN_FAST_OPEN_EMPTY as u8]);
        n += TCPOLEN_FAST_OPEN_EMPTY;
    }
    // EOL, then zero padding: both are zero bytes.
    while !n.is_multiple_of(4) {
        out[n] = TCPOPT_EOL;
        n += 1;
    }
    n
}

/// Write one IPv4 or IPv6 TCP packet into `buf` and return its length. IPv4 gets DF and
/// id 0, DSCP 0; IPv6 flow label 0; ECN bits from `seg.ip_ecn`. `payload` slices are
/// concatenated and must total `seg.data_len`.
pub fn build(
    buf: &mut [u8],
    src: SocketAddr,
    dst: SocketAddr,
    seg: &SegOut,
    payload: &[&[u8]],
    ttl: u8,
) -> Result<usize, BuildError> {
    build_with_tos(buf, src, dst, seg, payload, ttl, 0)
}

/// As [`build`], with the DSCP bits of the IPv4 TOS / IPv6 traffic class set from `tos`
/// (its ECN bits come from `seg.ip_ecn`): IP_TOS and IPV6_TCLASS.
pub fn build_with_tos(
    buf: &mut [u8],
    src: SocketAddr,
    dst: SocketAddr,
    seg: &SegOut,
    payload: &[&[u8]],
    ttl: u8,
    tos: u8,
) -> Result<usize, BuildError> {
    if seg.opts.has(to::SIGNATURE) {
        return Err(BuildError::UnsupportedOption);
    }
    let data_len: usize = payload.iter().map(|p| p.len()).sum();
    if data_len != seg.data_len as usize {
        return Err(BuildError::PayloadLenMismatch);
    }
    let ip_hlen = match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => IPV4_HLEN,
        (IpAddr::V6(_), IpAddr::V6(_)) => IPV6_HLEN,
        _ => return Err(BuildError::AddrFamilyMismatch),
    };
    let mut optbuf = [0u8; TCP_MAXOLEN];
    let olen = add_options(&seg.opts, seg.flags & th::SYN != 0, &mut optbuf);
    let th_len = TCP_HLEN + olen;
    let tcp_len = th_len + data_len;
    let ip_len_field = if ip_hlen == IPV4_HLEN {
        ip_hlen + tcp_len
    } else {
        tcp_len
    };
    let ip_len_field = u16::try_from(ip_len_field).map_err(|_| BuildError::TooLong)?;
    let total = ip_hlen + tcp_len;
    let pkt = buf.get_mut(..total).ok_or(BuildError::BufferTooSmall)?;
    let (iph, tcp) = pkt.split_at_mut(ip_hlen);

    let ecn = seg.ip_ecn & 0x03;
    let tos = (tos & !0x03) | ecn;
    let pseudo = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (s, d) = (s.octets(), d.octets());
            let l = ip_len_field.to_be_bytes();
            // IHL 5, TOS = DSCP + ECN; id 0 with DF set (RFC 6864), offset 0.
            #[rustfmt::skip]
            iph[..12].copy_from_slice(&[
                0x45, tos, l[0], l[1],
                0, 0, 0x40, 0,
                ttl, IPPROTO_TCP, 0, 0,
            ]);
            iph[12..16].copy_from_slice(&s);
            iph[16..20].copy_from_slice(&d);
            let c = Sum::new().add(iph).ones_complement();
            // The sum ran over native-endian words, so native bytes are wire order.
            iph[10..12].copy_from_slice(&c.to_ne_bytes());
            Sum::new()
                .add_arr(s)
                .add_arr(d)
                .add_arr([0, IPPROTO_TCP])
                .add_arr((tcp_len as u16).to_be_bytes())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let (s, d) = (s.octets(), d.octets());
            let l = ip_len_field.to_be_bytes();
            // Version 6, traffic class = DSCP + ECN, flow label 0.
            let tclass = tos;
            iph[..8].copy_from_slice(&[
                0x60 | (tclass >> 4),
                tclass << 4,
                0,
                0,
                l[0],
                l[1],
                IPPROTO_TCP,
                ttl,
            ]);
            iph[8..24].copy_from_slice(&s);
            iph[24..40].copy_from_slice(&d);
            Sum::new()
                .add_arr(s)
                .add_arr(d)
                .add_arr((tcp_len as u32).to_be_bytes())
                .add_arr([0, 0, 0, IPPROTO_TCP])
        }
        _ => return Err(BuildError::AddrFamilyMismatch),
    };

    let (hdr, data) = tcp.split_at_mut(th_len);
    hdr[0..2].copy_from_slice(&src.port().to_be_bytes());
    hdr[2..4].copy_from_slice(&dst.port().to_be_bytes());
    hdr[4..8].copy_from_slice(&seg.seq.to_be_bytes());
    hdr[8..12].copy_from_slice(&seg.ack.to_be_bytes());
    hdr[12] = ((th_len / 4) as u8) << 4 | ((seg.flags >> 8) as u8 & 0x01);
    hdr[13] = seg.flags as u8;
    hdr[14..16].copy_from_slice(&seg.win.to_be_bytes());
    hdr[16..18].copy_from_slice(&[0, 0]);
    hdr[18..20].copy_from_slice(&seg.urp.to_be_bytes());
    hdr[TCP_HLEN..].copy_from_slice(&optbuf[..olen]);
    // The payload is summed as it is copied in: one pass over it instead of two.
    let mut sum = pseudo.add(hdr);
    let mut at = 0;
    for p in payload {
        sum.copy_add(&mut data[at..at + p.len()], p);
        at += p.len();
    }
    let c = sum.ones_complement();
    tcp[16..18].copy_from_slice(&c.to_ne_bytes());
    Ok(total)
}

/// Completes a partial checksum (a device's CHECKSUM_PARTIAL, virtio's NEEDS_CSUM): the
/// field at `start + offset` holds the pseudo-header sum; the one's complement sum of
/// everything from `start` goes there.
pub fn complete_checksum(pkt: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start + offset;
    if at + 2 > pkt.len() || start > pkt.len() {
        return false;
    }
    let c = Sum::new().add(&pkt[start..]).ones_complement();
    pkt[at..at + 2].copy_from_slice(&c.to_ne_bytes());
    true
}

/// The addresses and TCP segment of an IP packet this host built (no extension headers),
/// for backends that carry the segment without its IP header (TCP over UDP).
pub fn tcp_segment(pkt: &[u8]) -> Option<(IpAddr, IpAddr, &[u8])> {
    match pkt.first()? >> 4 {
        4 => {
            let hlen = usize::from(pkt[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]));
            let src: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            Some((src.into(), dst.into(), pkt.get(hlen..total)?))
        }
        6 => {
            let plen = usize::from(u16::from_be_bytes([*pkt.get(4)?, *pkt.get(5)?]));
            let src: [u8; 16] = pkt.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            Some((
                src.into(),
                dst.into(),
                pkt.get(IPV6_HLEN..IPV6_HLEN + plen)?,
            ))
        }
        _ => None,
    }
}

/// Wraps a TCP segment that came without its IP header (its checksum field may be zero, as
/// FreeBSD sends it over UDP, whose checksum covered it) in an IP header from `src` to
/// `dst`, and sets the TCP checksum. Returns the packet's length in `buf`.
pub fn wrap_tcp(buf: &mut [u8], src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Result<usize, BuildError> {
    if tcp.len() < TCP_HLEN {
        return Err(BuildError::PayloadLenMismatch);
    }
    let ip_hlen = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => IPV4_HLEN,
        (IpAddr::V6(_), IpAddr::V6(_)) => IPV6_HLEN,
        _ => return Err(BuildError::AddrFamilyMismatch),
    };
    let total = ip_hlen + tcp.len();
    let pkt = buf.get_mut(..total).ok_or(BuildError::BufferTooSmall)?;
    let (iph, seg) = pkt.split_at_mut(ip_hlen);
    seg.copy_from_slice(tcp);
    seg[16..18].fill(0);
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let l = u16::try_from(total)
                .map_err(|_| BuildError::TooLong)?
                .to_be_bytes();
            #[rustfmt::skip]
            iph[..12].copy_from_slice(&[
                0x45, 0, l[0], l[1],
                0, 0, 0x40, 0,
                64, IPPROTO_TCP, 0, 0,
            ]);
            iph[12..16].copy_from_slice(&s.octets());
            iph[16..20].copy_from_slice(&d.octets());
            let c = Sum::new().add(iph).ones_complement();
            iph[10..12].copy_from_slice(&c.to_ne_bytes());
            Sum::new()
                .add_arr(s.octets())
                .add_arr(d.octets())
                .add_arr([0, IPPROTO_TCP])
                .add_arr((tcp.len() as u16).to_be_bytes())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let l = u16::try_from(tcp.len())
                .map_err(|_| BuildError::TooLong)?
                .to_be_bytes();
            iph[..8].copy_from_slice(&[0x60, 0, 0, 0, l[0], l[1], IPPROTO_TCP, 64]);
            iph[8..24].copy_from_slice(&s.octets());
            iph[24..40].copy_from_slice(&d.octets());
            Sum::new()
                .add_arr(s.octets())
                .add_arr(d.octets())
                .add_arr((tcp.len() as u32).to_be_bytes())
                .add_arr([0, 0, 0, IPPROTO_TCP])
        }
        _ => return Err(BuildError::AddrFamilyMismatch),
    };
    let c = pseudo.add(seg).ones_complement();
    seg[16..18].copy_from_slice(&c.to_ne_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};
    use plugtcp_abi::segment::ecn;
    use proptest::prelude::*;

    const A4: &str = "10.0.0.1:1234";
    const B4: &str = "10.0.0.2:80";
    const A6: &str = "[2001:db8::1]:1234";
    const B6: &str = "[2001:db8::2]:80";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// RFC 1071 done the slow, obvious way (big-endian 16-bit words), independent of
    /// the code under test. Returns the folded sum, not its complement.
    fn naive_sum(parts: &[&[u8]]) -> u16 {
        let mut bytes = Vec::new();
        for p in parts {
            bytes.extend_from_slice(p);
        }
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut s: u32 = 0;
        for w in bytes.chunks(2) {
            s += u32::from(u16::from_be_bytes([w[0], w[1]]));
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// Offset of the TCP header, following IPv6 extension headers.
    fn tcp_off(pkt: &[u8]) -> usize {
        if pkt[0] >> 4 == 4 {
            usize::from(pkt[0] & 0x0f) * 4
        } else {
            let (mut next, mut off) = (pkt[6], 40);
            while next != IPPROTO_TCP {
                next = pkt[off];
                off += (usize::from(pkt[off + 1]) + 1) * 8;
            }
            off
        }
    }

    /// Checks both checksums independently; returns (ip ok, tcp ok).
    fn naive_verify(pkt: &[u8]) -> (bool, bool) {
        let off = tcp_off(pkt);
        if pkt[0] >> 4 == 4 {
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            let tcp = &pkt[off..total];
            let len = (tcp.len() as u16).to_be_bytes();
            let ip_ok = naive_sum(&[&pkt[..off]]) == 0xffff;
            let ph = [0, IPPROTO_TCP, len[0], len[1]];
            (ip_ok, naive_sum(&[&pkt[12..20], &ph, tcp]) == 0xffff)
        } else {
            let end = 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            let tcp = &pkt[off..end];
            let len = (tcp.len() as u32).to_be_bytes();
            let ph = [len[0], len[1], len[2], len[3], 0, 0, 0, IPPROTO_TCP];
            (true, naive_sum(&[&pkt[8..40], &ph, tcp]) == 0xffff)
        }
    }

    /// Recompute the checksums of a hand-edited packet with the naive sum.
    fn refix(pkt: &mut [u8]) {
        let off = tcp_off(pkt);
        if pkt[0] >> 4 == 4 {
            pkt[10..12].fill(0);
            let c = !naive_sum(&[&pkt[..off]]);
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])).min(pkt.len());
            if total >= off + 18 {
                pkt[off + 16..off + 18].fill(0);
                let len = ((total - off) as u16).to_be_bytes();
                let ph = [0, IPPROTO_TCP, len[0], len[1]];
                let c = !naive_sum(&[&pkt[12..20], &ph, &pkt[off..total]]);
                pkt[off + 16..off + 18].copy_from_slice(&c.to_be_bytes());
            }
        } else {
            let end = 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            pkt[off + 16..off + 18].fill(0);
            let len = ((end - off) as u32).to_be_bytes();
            let ph = [len[0], len[1], len[2], len[3], 0, 0, 0, IPPROTO_TCP];
            let c = !naive_sum(&[&pkt[8..40], &ph, &pkt[off..end]]);
            pkt[off + 16..off + 18].copy_from_slice(&c.to_be_bytes());
        }
    }

    fn syn_all() -> SegOut {
        SegOut {
            seq: 1,
            flags: th::SYN,
            win: 65535,
            opts: TcpOpts {
                flags: to::MSS | to::WSCALE | to::SACKPERM | to::TSTAMP,
                mss: 1460,
                wscale: 7,
                tsval: 100,
                tsecr: 0,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn ack_seg(payload: &[u8]) -> SegOut {
        SegOut {
            seq: 1000,
            ack: 2000,
            flags: th::ACK | th::PUSH,
            win: 512,
            data_len: payload.len() as u32,
            ..Default::default()
        }
    }

    fn build_vec(src: &str, dst: &str, seg: &SegOut, payload: &[&[u8]]) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_HEADER + 4096];
        let n = build(&mut buf, sa(src), sa(dst), seg, payload, 64).unwrap();
        buf.truncate(n);
        buf
    }

    /// An IPv4 packet whose TCP options are exactly `opts` (padded with zeros).
    fn with_raw_options(opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut pkt = build_vec(A4, B4, &ack_seg(payload), &[payload]);
        let padded = opts.len().div_ceil(4) * 4;
        let mut o = opts.to_vec();
        o.resize(padded, 0);
        pkt.splice(40..40, o);
        let total = (pkt.len() as u16).to_be_bytes();
        pkt[2..4].copy_from_slice(&total);
        pkt[32] = (((20 + padded) / 4) as u8) << 4;
        refix(&mut pkt);
        pkt
    }

    #[test]
    fn syn_option_bytes_match_freebsd() {
        let pkt = build_vec(A4, B4, &syn_all(), &[]);
        assert_eq!(pkt[32] >> 4, 10, "20 option bytes");
        let want: [u8; 20] = [
            2, 4, 0x05, 0xb4, // mss 1460
            1, 3, 3, 7, // nop, wscale 7
            4, 2, // sackOK
            8, 10, 0, 0, 0, 100, 0, 0, 0, 0, // TS val 100 ecr 0
        ];
        assert_eq!(&pkt[40..60], &want);
        assert_eq!(options_len(&syn_all().opts, true), 20);

        let mut s = syn_all();
        s.opts.flags &= !to::SACKPERM;
        let pkt = build_vec(A4, B4, &s, &[]);
        let want: [u8; 20] = [
            2, 4, 0x05, 0xb4, 1, 3, 3, 7, 1, 1, 8, 10, 0, 0, 0, 100, 0, 0, 0, 0,
        ];
        assert_eq!(&pkt[40..60], &want);

        // MSS alone pads nothing; wscale alone gets one leading NOP.
        s.opts.flags = to::MSS;
        assert_eq!(&build_vec(A4, B4, &s, &[])[40..44], &[2, 4, 0x05, 0xb4]);
        s.opts.flags = to::WSCALE;
        assert_eq!(&build_vec(A4, B4, &s, &[])[40..44], &[1, 3, 3, 7]);
        // sackOK alone: 2 bytes, then EOL + zero padding.
        s.opts.flags = to::SACKPERM;
        assert_eq!(&build_vec(A4, B4, &s, &[])[40..44], &[4, 2, 0, 0]);
        // TFO cookie request goes last, then EOL padding.
        s.opts = syn_all().opts;
        s.opts.flags |= to::FASTOPEN;
        let pkt = build_vec(A4, B4, &s, &[]);
        assert_eq!(&pkt[60..64], &[34, 2, 0, 0]);
        assert_eq!(options_len(&s.opts, true), 24);
    }

    #[test]
    fn non_syn_ts_and_sack_layout() {
        let blocks = [
            SackBlock { start: 1, end: 2 },
            SackBlock { start: 3, end: 4 },
            SackBlock { start: 5, end: 6 },
            SackBlock { start: 7, end: 8 },
        ];
        let mut s = ack_seg(&[]);
        s.opts = TcpOpts {
            flags: to::TSTAMP | to::SACK | to::MSS | to::WSCALE | to::SACKPERM,
            tsval: 0x01020304,
            tsecr: 0x05060708,
            nsacks: 4,
            sacks: blocks,
            mss: 1460,
            wscale: 3,
        };
        // SYN-only options are not sent on a non-SYN; TS leaves room for 3 blocks.
        assert_eq!(options_len(&s.opts, false), 40);
        let pkt = build_vec(A4, B4, &s, &[]);
        assert_eq!(&pkt[40..52], &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&pkt[52..56], &[1, 1, 5, 26]);
        assert_eq!(&pkt[56..60], &[0, 0, 0, 1]);
        let p = parse(&pkt).unwrap();
        assert_eq!(p.opts.flags, to::TSTAMP | to::SACK);
        assert_eq!(p.opts.sack_blocks(), &blocks[..3]);

        s.opts.flags = to::SACK;
        assert_eq!(options_len(&s.opts, false), 36);
        let pkt = build_vec(A4, B4, &s, &[]);
        assert_eq!(&pkt[40..44], &[1, 1, 5, 34]);
        assert_eq!(parse(&pkt).unwrap().opts.sack_blocks(), &blocks);

        s.opts.flags = to::TSTAMP;
        assert_eq!(options_len(&s.opts, false), 12);
        // An empty SACK list sends no SACK option.
        s.opts.flags = to::SACK;
        s.opts.nsacks = 0;
        assert_eq!(options_len(&s.opts, false), 0);
        // SACK blocks are not sent on a SYN.
        s.opts.nsacks = 2;
        assert_eq!(options_len(&s.opts, true), 0);
        // MD5 is refused rather than sent unsigned.
        s.opts.flags = to::SIGNATURE;
        let mut buf = [0u8; MAX_HEADER];
        assert_eq!(
            build(&mut buf, sa(A4), sa(B4), &s, &[], 64),
            Err(BuildError::UnsupportedOption)
        );
    }

    #[test]
    fn build_errors() {
        let mut buf = [0u8; MAX_HEADER];
        let s = ack_seg(&[0; 10]);
        let e = |r: Result<usize, BuildError>| r.unwrap_err();
        assert_eq!(
            e(build(&mut buf, sa(A4), sa(B6), &s, &[&[0; 10]], 64)),
            BuildError::AddrFamilyMismatch
        );
        assert_eq!(
            e(build(&mut buf, sa(A4), sa(B4), &s, &[&[0; 9]], 64)),
            BuildError::PayloadLenMismatch
        );
        assert_eq!(
            e(build(&mut buf[..49], sa(A4), sa(B4), &s, &[&[0; 10]], 64)),
            BuildError::BufferTooSmall
        );
        assert_eq!(
            build(&mut buf[..50], sa(A4), sa(B4), &s, &[&[0; 10]], 64),
            Ok(50)
        );
        // IPv4's total length counts its header; IPv6's payload length does not.
        let big = vec![0u8; 65536 - 20];
        let mut bigbuf = vec![0u8; 70000];
        for (a, b, max_data) in [(A4, B4, 65535 - 40), (A6, B6, 65535 - 20)] {
            let d = &big[..max_data + 1];
            let r = build(&mut bigbuf, sa(a), sa(b), &ack_seg(d), &[d], 64);
            assert_eq!(r, Err(BuildError::TooLong));
            let d = &big[..max_data];
            let n = build(&mut bigbuf, sa(a), sa(b), &ack_seg(d), &[d], 64).unwrap();
            assert_eq!(parse(&bigbuf[..n]).unwrap().payload.len(), max_data);
        }
        assert_eq!(BuildError::BufferTooSmall.errno(), Errno::ENOBUFS);
    }

    #[test]
    fn header_fields_v4_v6() {
        let mut s = ack_seg(b"hello");
        s.flags = th::ACK | th::ECE | th::CWR | th::AE | th::URG;
        s.urp = 3;
        s.ip_ecn = ecn::CE;
        for (a, b) in [(A4, B4), (A6, B6)] {
            let pkt = build_vec(a, b, &s, &[b"hel", b"lo"]);
            let p = parse(&pkt).unwrap();
            assert_eq!((p.src, p.src_port), (sa(a).ip(), 1234));
            assert_eq!((p.dst, p.dst_port), (sa(b).ip(), 80));
            assert_eq!(p.flags, s.flags);
            assert_eq!(p.ecn, ecn::CE);
            assert_eq!(p.ttl_or_hlim, 64);
            assert_eq!((p.seq, p.ack, p.win, p.urp), (1000, 2000, 512, 3));
            assert_eq!(p.payload, b"hello");
            let seg = p.seg();
            assert_eq!(seg.payload.as_slice(), b"hello");
            assert_eq!((seg.ip_ecn, seg.flags), (ecn::CE, s.flags));
        }
        let pkt = build_vec(A4, B4, &s, &[b"hello"]);
        assert_eq!(pkt[1], ecn::CE, "TOS: DSCP 0, ECN CE");
        assert_eq!(&pkt[4..8], &[0, 0, 0x40, 0], "id 0, DF");
        assert_eq!(pkt[8], 64);
        let pkt = build_vec(A6, B6, &s, &[b"hello"]);
        assert_eq!(&pkt[..4], &[0x60, ecn::CE << 4, 0, 0], "tclass ECN, flow 0");
    }

    #[test]
    fn link_padding_is_trimmed() {
        let mut pkt = build_vec(A4, B4, &ack_seg(b"abc"), &[b"abc"]);
        pkt.extend_from_slice(&[0xee; 7]);
        assert_eq!(parse(&pkt).unwrap().payload, b"abc");
        let mut pkt = build_vec(A6, B6, &ack_seg(b"abc"), &[b"abc"]);
        pkt.extend_from_slice(&[0xee; 7]);
        assert_eq!(parse(&pkt).unwrap().payload, b"abc");
    }

    #[test]
    fn ipv4_options_skipped() {
        let mut pkt = build_vec(A4, B4, &syn_all(), &[]);
        pkt.splice(20..20, [1, 1, 1, 0]); // NOP NOP NOP EOL
        pkt[0] = 0x46;
        let total = (pkt.len() as u16).to_be_bytes();
        pkt[2..4].copy_from_slice(&total);
        refix(&mut pkt);
        let p = parse(&pkt).unwrap();
        assert_eq!(p.opts, syn_all().opts);
        assert_eq!(p.src_port, 1234);
    }

    /// Insert an extension header of kind `kind` after the IPv6 header.
    fn with_ext6(mut pkt: Vec<u8>, kind: u8, ext: &[u8]) -> Vec<u8> {
        let mut e = ext.to_vec();
        e[0] = pkt[6];
        pkt[6] = kind;
        pkt.splice(40..40, e);
        let plen = ((pkt.len() - 40) as u16).to_be_bytes();
        pkt[4..6].copy_from_slice(&plen);
        pkt
    }

    #[test]
    fn ipv6_extension_headers() {
        let base = build_vec(A6, B6, &ack_seg(b"xyz"), &[b"xyz"]);
        let hbh = [0, 0, 1, 4, 0, 0, 0, 0]; // PadN
        let dst16 = [0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let rh_done = [0, 0, 4, 0, 0, 0, 0, 0]; // type 4, segments left 0
        let pkt = with_ext6(base.clone(), IPPROTO_DSTOPTS, &dst16);
        let pkt = with_ext6(pkt, IPPROTO_ROUTING, &rh_done);
        let pkt = with_ext6(pkt, IPPROTO_HOPOPTS, &hbh);
        assert_eq!(naive_verify(&pkt), (true, true));
        assert_eq!(parse(&pkt).unwrap().payload, b"xyz");

        let rh_live = [0, 0, 4, 1, 0, 0, 0, 0];
        let pkt = with_ext6(base.clone(), IPPROTO_ROUTING, &rh_live);
        assert_eq!(parse(&pkt), Err(DropReason::BadExtHeader));

        let frag = [0, 0, 0, 1, 0, 0, 0, 7]; // offset 0, M=1
        let pkt = with_ext6(base.clone(), IPPROTO_FRAGMENT, &frag);
        assert_eq!(parse(&pkt), Err(DropReason::Fragment));

        // Extension header claiming more than the payload.
        let mut pkt = with_ext6(base.clone(), IPPROTO_HOPOPTS, &hbh);
        pkt[41] = 200;
        assert_eq!(parse(&pkt), Err(DropReason::Truncated));

        // No next header (59) and UDP.
        let mut pkt = with_ext6(base.clone(), IPPROTO_DSTOPTS, &hbh);
        pkt[40] = 59;
        assert_eq!(parse(&pkt), Err(DropReason::NotTcp));
        let mut pkt = base;
        pkt[6] = 17;
        assert_eq!(parse(&pkt), Err(DropReason::NotTcp));
    }

    #[test]
    fn every_drop_reason() {
        use DropReason::*;
        let v4 = build_vec(A4, B4, &ack_seg(b"data!"), &[b"data!"]);
        let v6 = build_vec(A6, B6, &ack_seg(b"data!"), &[b"data!"]);
        assert!(parse(&v4).is_ok() && parse(&v6).is_ok());
        let edit = |base: &[u8], f: &dyn Fn(&mut Vec<u8>), fix: bool| {
            let mut p = base.to_vec();
            f(&mut p);
            if fix {
                refix(&mut p);
            }
            parse(&p).err()
        };
        let mut seen = std::collections::HashSet::new();
        let mut check = |r: Option<DropReason>, want: DropReason| {
            assert_eq!(r, Some(want));
            seen.insert(want);
        };

        check(parse(&[]).err(), Truncated);
        check(parse(&[0x55; 60]).err(), BadVersion);
        check(parse(&v4[..19]).err(), Truncated);
        check(parse(&v6[..39]).err(), Truncated);
        check(parse(&v4[..v4.len() - 1]).err(), Truncated);
        check(parse(&v6[..v6.len() - 1]).err(), Truncated);
        // IP length leaves a TCP segment shorter than a TCP header.
        check(
            edit(&v4, &|p| p[2..4].copy_from_slice(&[0, 39]), true),
            Truncated,
        );
        check(
            edit(&v6, &|p| p[4..6].copy_from_slice(&[0, 19]), false),
            Truncated,
        );

        check(edit(&v4, &|p| p[0] = 0x44, true), BadLength);
        check(
            edit(&v4, &|p| p[2..4].copy_from_slice(&[0, 19]), true),
            BadLength,
        );
        check(edit(&v6, &|p| p[4..6].fill(0), false), BadLength);

        check(edit(&v4, &|p| p[8] ^= 1, false), BadIpChecksum);

        check(edit(&v4, &|p| p[6] |= 0x20, true), Fragment); // MF
        check(edit(&v4, &|p| p[7] = 1, true), Fragment); // offset 8
        check(edit(&v4, &|p| p[9] = 17, true), NotTcp);

        check(
            edit(&v4, &|p| *p.last_mut().unwrap() ^= 1, false),
            BadTcpChecksum,
        );
        check(
            edit(&v6, &|p| *p.last_mut().unwrap() ^= 1, false),
            BadTcpChecksum,
        );
        // A changed pseudo-header field (address) must break the TCP checksum.
        check(edit(&v6, &|p| p[39] ^= 1, false), BadTcpChecksum);

        check(edit(&v4, &|p| p[32] = 4 << 4, true), BadDataOffset);
        check(edit(&v4, &|p| p[32] = 7 << 4, true), BadDataOffset); // 28 > 25 bytes
        check(edit(&v6, &|p| p[52] = 15 << 4, true), BadDataOffset);

        let frag = [0, 0, 0, 0, 0, 0, 0, 0];
        check(
            parse(&with_ext6(v6.clone(), IPPROTO_FRAGMENT, &frag)).err(),
            Fragment,
        );
        check(
            parse(&with_ext6(
                v6.clone(),
                IPPROTO_ROUTING,
                &[0, 0, 4, 2, 0, 0, 0, 0],
            ))
            .err(),
            BadExtHeader,
        );

        for r in DropReason::ALL {
            assert!(seen.contains(&r), "{r:?} not triggered");
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
    }

    #[test]
    fn malformed_options_keep_segment() {
        let ts = [8, 10, 0, 0, 0, 9, 0, 0, 0, 8];
        let cases: &[(&[u8], u16)] = &[
            // length 0, 1, and running past the header: stop, keep what came before
            (&[2, 4, 0x05, 0xb4, 3, 0, 7], to::MSS),
            (&[2, 4, 0x05, 0xb4, 3, 1, 7], to::MSS),
            (&[2, 4, 0x05, 0xb4, 8, 30, 0, 0], to::MSS),
            // kind with no room for a length byte
            (&[1, 1, 1, 8], 0),
            // wrong length for the kind: skipped, later options still parsed
            (&[2, 3, 0, 1, 3, 3, 7, 0], to::WSCALE),
            (&[5, 9, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7], to::WSCALE),
            (&[8, 8, 0, 0, 0, 0, 0, 0, 4, 2], to::SACKPERM),
            // unknown kind skipped by its length
            (&[99, 5, 1, 2, 3, 4, 2], to::SACKPERM),
            // EOL ends the list
            (&[0, 4, 2], 0),
            // TFO cookie request and 8-byte cookie, bad TFO length, MD5
            (&[34, 2], to::FASTOPEN),
            (&[34, 10, 1, 2, 3, 4, 5, 6, 7, 8], to::FASTOPEN),
            (&[34, 3, 0], 0),
            (
                &[19, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                to::SIGNATURE,
            ),
            (&ts, to::TSTAMP),
        ];
        for &(opts, flags) in cases {
            let pkt = with_raw_options(opts, b"payload");
            let p = parse(&pkt).unwrap_or_else(|e| panic!("{opts:?}: {e:?}"));
            assert_eq!(p.opts.flags, flags, "{opts:?}");
            assert_eq!(p.payload, b"payload");
        }
        let p = with_raw_options(&[4, 2, 3, 3, 15], b"");
        let o = parse(&p).unwrap().opts;
        assert_eq!(
            (o.flags, o.wscale),
            (to::SACKPERM | to::WSCALE, 14),
            "clamped"
        );
        let p = with_raw_options(&ts, b"");
        let o = parse(&p).unwrap().opts;
        assert_eq!((o.tsval, o.tsecr), (9, 8));
    }

    /// Expected options after a build -> parse round trip.
    fn expected_opts(o: &TcpOpts, syn: bool) -> TcpOpts {
        let mut e = TcpOpts::default();
        if syn {
            if o.has(to::MSS) {
                e.flags |= to::MSS;
                e.mss = o.mss;
            }
            if o.has(to::WSCALE) {
                e.flags |= to::WSCALE;
                e.wscale = o.wscale;
            }
            e.flags |= o.flags & (to::SACKPERM | to::FASTOPEN);
        }
        if o.has(to::TSTAMP) {
            e.flags |= to::TSTAMP;
            (e.tsval, e.tsecr) = (o.tsval, o.tsecr);
        }
        if !syn && o.has(to::SACK) && o.nsacks > 0 {
            let cap = if o.has(to::TSTAMP) { 3 } else { 4 };
            let n = usize::from(o.nsacks).min(cap);
            e.flags |= to::SACK;
            e.nsacks = n as u8;
            e.sacks[..n].copy_from_slice(&o.sacks[..n]);
        }
        e
    }

    /// etherparse's own slicer must accept the packet and agree on every field.
    fn etherparse_agrees(pkt: &[u8], p: &Parsed<'_>) {
        let sp = SlicedPacket::from_ip(pkt).expect("etherparse rejects packet");
        match sp.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                assert!(h.dont_fragment() && !h.more_fragments());
                assert_eq!(h.ecn().value(), p.ecn);
                assert_eq!(h.ttl(), p.ttl_or_hlim);
                assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
            }
            Some(NetSlice::Ipv6(ip)) => {
                assert_eq!(ip.header().ecn().value(), p.ecn);
                assert_eq!(ip.header().flow_label().value(), 0);
            }
            _ => panic!("not IP"),
        }
        let Some(TransportSlice::Tcp(t)) = sp.transport else {
            panic!("not TCP")
        };
        assert_eq!(t.source_port(), p.src_port);
        assert_eq!(t.destination_port(), p.dst_port);
        assert_eq!(t.sequence_number(), p.seq);
        assert_eq!(t.acknowledgment_number(), p.ack);
        assert_eq!(t.window_size(), p.win);
        assert_eq!(t.urgent_pointer(), p.urp);
        assert_eq!(t.payload(), p.payload);
        assert_eq!(t.ns(), p.flags & th::AE != 0);
        assert_eq!(t.cwr(), p.flags & th::CWR != 0);
        assert_eq!(t.ece(), p.flags & th::ECE != 0);
        assert_eq!(t.syn(), p.flags & th::SYN != 0);
        let want = match (p.src, p.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => t.calc_checksum_ipv4(s.octets(), d.octets()),
            (IpAddr::V6(s), IpAddr::V6(d)) => t.calc_checksum_ipv6(s.octets(), d.octets()),
            _ => panic!("mixed families"),
        };
        assert_eq!(want.unwrap(), t.checksum());
        if p.opts.has(to::FASTOPEN) {
            return; // etherparse does not know kind 34
        }
        let mut o = TcpOpts::default();
        for el in t.options_iterator() {
            match el.expect("etherparse option error") {
                TcpOptionElement::Noop => {}
                TcpOptionElement::MaximumSegmentSize(m) => {
                    (o.flags, o.mss) = (o.flags | to::MSS, m)
                }
                TcpOptionElement::WindowScale(w) => (o.flags, o.wscale) = (o.flags | to::WSCALE, w),
                TcpOptionElement::SelectiveAcknowledgementPermitted => o.flags |= to::SACKPERM,
                TcpOptionElement::Timestamp(v, e) => {
                    (o.flags, o.tsval, o.tsecr) = (o.flags | to::TSTAMP, v, e)
                }
                TcpOptionElement::SelectiveAcknowledgement(first, rest) => {
                    o.flags |= to::SACK;
                    for (s, e) in core::iter::once(Some(first)).chain(rest).flatten() {
                        o.sacks[usize::from(o.nsacks)] = SackBlock { start: s, end: e };
                        o.nsacks += 1;
                    }
                }
            }
        }
        assert_eq!(o, p.opts);
    }

    fn arb_opts() -> impl Strategy<Value = TcpOpts> {
        (
            0u16..0x40, // any subset of MSS..FASTOPEN
            any::<u16>(),
            0u8..=14,
            0u8..=4,
            any::<(u32, u32)>(),
            prop::array::uniform4(any::<(u32, u32)>()),
        )
            .prop_map(|(flags, mss, wscale, nsacks, (tsval, tsecr), s)| TcpOpts {
                flags,
                mss,
                wscale,
                nsacks,
                tsval,
                tsecr,
                sacks: s.map(|(start, end)| SackBlock { start, end }),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// The vector paths (whichever this CPU runs, and the portable one) agree with the
        /// naive sum over lengths that cross the 64 KiB lane blocks, split at odd points.
        #[test]
        fn sums_agree_with_naive(
            seed in any::<u64>(),
            len in prop_oneof![0usize..256, 0usize..200_000],
            cut in any::<prop::sample::Index>(),
        ) {
            let mut x = seed | 1;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let naive = u16::from_ne_bytes(naive_sum(&[&bytes]).to_be_bytes());
            let cut = cut.index(len + 1);
            let sum = Sum::new().add(&bytes[..cut]).add(&bytes[cut..]);
            prop_assert_eq!(!sum.ones_complement(), naive);
            // Raw accumulators differ (short inputs add 32-bit words, the lanes 16-bit
            // ones); their one's-complement folds must agree.
            let even = &bytes[..len & !1];
            let fold = |acc: u64| Sum { acc, odd: None }.ones_complement();
            prop_assert_eq!(fold(sum_lanes(even)), fold(sum_words(even)));
            let mut sum = Sum::new();
            let mut copy = vec![0; len];
            sum.copy_add(&mut copy, &bytes);
            prop_assert_eq!(&copy, &bytes);
            prop_assert_eq!(!sum.ones_complement(), naive);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn round_trip(
            v6 in any::<bool>(),
            flags in 0u16..0x200,
            opts in arb_opts(),
            (seq, ack, win, urp) in any::<(u32, u32, u16, u16)>(),
            ip_ecn in 0u8..4,
            ttl in any::<u8>(),
            (sport, dport) in any::<(u16, u16)>(),
            payload in prop::collection::vec(any::<u8>(), 0..2000),
            cuts in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
        ) {
            let (src, dst) = if v6 {
                (SocketAddr::new("2001:db8::a".parse().unwrap(), sport),
                 SocketAddr::new("fe80::1:2".parse().unwrap(), dport))
            } else {
                (SocketAddr::new("192.0.2.7".parse().unwrap(), sport),
                 SocketAddr::new("198.51.100.9".parse().unwrap(), dport))
            };
            // Split the payload into up to three slices, odd lengths included.
            let mut c = [cuts.0.index(payload.len() + 1), cuts.1.index(payload.len() + 1)];
            c.sort();
            let parts = [&payload[..c[0]], &payload[c[0]..c[1]], &payload[c[1]..]];
            let seg = SegOut {
                seq, ack, flags, win, urp, ip_ecn, opts,
                data_off: 0,
                data_len: payload.len() as u32,
                tso_segsz: 0,
            };
            let mut buf = [0u8; MAX_HEADER + 2000];
            let n = build(&mut buf, src, dst, &seg, &parts, ttl).unwrap();
            let pkt = &buf[..n];
            let syn = flags & th::SYN != 0;
            let olen = options_len(&opts, syn);
            prop_assert_eq!(n, if v6 { 60 } else { 40 } + olen + payload.len());
            prop_assert_eq!(naive_verify(pkt), (true, true));
            let p = parse(pkt).unwrap();
            prop_assert_eq!(p.src, src.ip());
            prop_assert_eq!(p.dst, dst.ip());
            prop_assert_eq!((p.src_port, p.dst_port), (sport, dport));
            prop_assert_eq!((p.seq, p.ack, p.flags, p.win, p.urp), (seq, ack, flags, win, urp));
            prop_assert_eq!((p.ecn, p.ttl_or_hlim), (ip_ecn, ttl));
            prop_assert_eq!(p.opts, expected_opts(&opts, syn));
            prop_assert_eq!(p.payload, &payload[..]);
            etherparse_agrees(pkt, &p);
        }
    }

    fn pcap(pkts: &[&[u8]]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]); // thiszone, sigfigs
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
        for (i, p) in pkts.iter().enumerate() {
            f.extend_from_slice(&(i as u32).to_le_bytes());
            f.extend_from_slice(&500u32.to_le_bytes());
            f.extend_from_slice(&(p.len() as u32).to_le_bytes());
            f.extend_from_slice(&(p.len() as u32).to_le_bytes());
            f.extend_from_slice(p);
        }
        f
    }

    #[test]
    fn tcpdump_reads_built_packets() {
        let Ok(out) = std::process::Command::new("tcpdump")
            .arg("--version")
            .output()
        else {
            eprintln!("tcpdump not installed; skipping");
            return;
        };
        assert!(out.status.success());
        let syn4 = build_vec(A4, B4, &syn_all(), &[]);
        let syn6 = build_vec(A6, B6, &syn_all(), &[]);
        let mut s = ack_seg(b"hello world");
        s.opts = TcpOpts {
            flags: to::TSTAMP | to::SACK,
            tsval: 7,
            tsecr: 5,
            nsacks: 2,
            sacks: [
                SackBlock {
                    start: 3000,
                    end: 4000,
                },
                SackBlock {
                    start: 5000,
                    end: 6000,
                },
                SackBlock::default(),
                SackBlock::default(),
            ],
            ..Default::default()
        };
        let ack6 = build_vec(A6, B6, &s, &[b"hello ", b"world"]);
        let path = std::env::temp_dir().join(format!("wire-test-{}.pcap", std::process::id()));
        std::fs::write(&path, pcap(&[&syn4, &syn6, &ack6])).unwrap();
        let out = std::process::Command::new("tcpdump")
            .args(["-nn", "-vv", "-S", "-r"])
            .arg(&path)
            .output()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want_syn = "options [mss 1460,nop,wscale 7,sackOK,TS val 100 ecr 0]";
        assert_eq!(text.matches(want_syn).count(), 2, "{text}");
        assert!(
            text.contains("options [nop,nop,TS val 7 ecr 5,nop,nop,sack 2 {3000:4000}{5000:6000}]"),
            "{text}"
        );
        assert!(text.contains("length 11"), "{text}");
        assert!(!text.contains("incorrect"), "{text}");
        // tcpdump verifies (and prints) only the TCP checksums.
        assert_eq!(text.matches("(correct)").count(), 3, "{text}");
    }
}
