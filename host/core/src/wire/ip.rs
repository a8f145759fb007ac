//! IPv4 and IPv6 headers: parsing a received packet down to its TCP segment, and wrapping
//! a TCP segment in an IP header.

use super::*;

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
    pub(super) parsed: Parsed<'a>,
    /// Pseudo-header and TCP header, summed.
    pub(super) header_sum: Sum,
    /// The device vouches for the payload (see [`Unverified::checksum_offloaded`]).
    pub(super) checksum_offloaded: bool,
}

impl<'a> Unverified<'a> {
    /// The headers, for demux and placement decisions only.
    pub fn headers(&self) -> &Parsed<'a> {
        &self.parsed
    }

    /// The device that handed the packet over vouches for it and left its checksum
    /// partial (virtio's NEEDS_CSUM, Linux's CHECKSUM_PARTIAL: a packet the local kernel
    /// built, not one from a wire): it is not verified, as Linux does not verify those.
    pub fn checksum_offloaded(&mut self) {
        self.checksum_offloaded = true;
    }

    pub fn verify(self) -> Result<Parsed<'a>, DropReason> {
        if self.checksum_offloaded {
            return Ok(self.parsed);
        }
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
        if self.checksum_offloaded {
            head.copy_from_slice(a);
            tail.copy_from_slice(b);
            return Ok(self.parsed);
        }
        let mut sum = self.header_sum;
        sum.copy_add(head, a);
        sum.copy_add(tail, b);
        if sum.ones_complement() != 0 {
            return Err(DropReason::BadTcpChecksum);
        }
        Ok(self.parsed)
    }
}

pub fn parse_unverified(pkt: &[u8]) -> Result<Unverified<'_>, DropReason> {
    match pkt.first().map(|b| b >> 4) {
        None => Err(DropReason::Truncated),
        Some(4) => parse_v4(pkt),
        Some(6) => parse_v6(pkt),
        Some(_) => Err(DropReason::BadVersion),
    }
}

pub(super) fn parse_v4(pkt: &[u8]) -> Result<Unverified<'_>, DropReason> {
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

pub(super) fn parse_v6(pkt: &[u8]) -> Result<Unverified<'_>, DropReason> {
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
    wrap_tcp_inner(buf, src, dst, tcp, false)
}

/// As [`wrap_tcp`], leaving the TCP checksum partial (the pseudo-header sum) for a carrier
/// whose own checksum already covered the segment: the receive path takes it unverified
/// (`Host::input_checksum_offloaded`), or completes it with [`complete_checksum`].
pub fn wrap_tcp_partial(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    tcp: &[u8],
) -> Result<usize, BuildError> {
    wrap_tcp_inner(buf, src, dst, tcp, true)
}

fn wrap_tcp_inner(
    buf: &mut [u8],
    src: IpAddr,
    dst: IpAddr,
    tcp: &[u8],
    partial: bool,
) -> Result<usize, BuildError> {
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
    let c = if partial {
        !pseudo.ones_complement()
    } else {
        pseudo.add(seg).ones_complement()
    };
    seg[16..18].copy_from_slice(&c.to_ne_bytes());
    Ok(total)
}
