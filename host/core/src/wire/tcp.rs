//! The TCP header: parsing a received one and building a whole IP + TCP packet to send.

use super::*;

/// `tcp` is exactly the TCP segment (header + payload) per the IP length fields.
pub(super) fn parse_tcp(
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
        checksum_offloaded: false,
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
    build_finished(buf, src, dst, seg, payload, (ttl, tos), Finish::Checksum)
}

/// How a built segment is finished.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Finish<'k> {
    /// The TCP checksum computed (summed while the payload is copied in).
    Checksum,
    /// For a device that computes the TCP checksum (checksum offload, virtio's
    /// NEEDS_CSUM): the field holds the pseudo-header sum and the payload is copied without
    /// summing it. Only for a device that completes it.
    PartialChecksum,
    /// The TCP-MD5 signature option (`to::SIGNATURE`) filled in with this key (RFC 2385),
    /// then the checksum computed.
    Signed(&'k [u8]),
}

/// As [`build_with_tos`] (`ip` is the TTL and the TOS), finished as `finish` says.
pub fn build_finished(
    buf: &mut [u8],
    src: SocketAddr,
    dst: SocketAddr,
    seg: &SegOut,
    payload: &[&[u8]],
    ip: (u8, u8),
    finish: Finish<'_>,
) -> Result<usize, BuildError> {
    let (ttl, tos) = ip;
    let key = match finish {
        Finish::Signed(k) => Some(k),
        _ => None,
    };
    // A signature needs its key; a key needs the option.
    if seg.opts.has(to::SIGNATURE) != key.is_some() {
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
    if let Some(key) = key {
        // Signed (rare: BGP peers): the payload goes in first, then the digest over it,
        // then the checksum over everything; three passes, none on the fast path.
        let mut at = 0;
        for p in payload {
            data[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        if !super::sign(src.ip(), dst.ip(), tcp, key) {
            return Err(BuildError::UnsupportedOption);
        }
        let c = pseudo.add(tcp).ones_complement();
        tcp[16..18].copy_from_slice(&c.to_ne_bytes());
        return Ok(total);
    }
    if finish == Finish::PartialChecksum {
        let mut at = 0;
        for p in payload {
            data[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        // The device adds the segment (or each packet it cuts) to the pseudo-header sum.
        tcp[16..18].copy_from_slice(&(!pseudo.ones_complement()).to_ne_bytes());
        return Ok(total);
    }
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
