//! Packets on the runner's side of the wire: building the IP packets a script injects
//! (its options byte for byte, in the order written), reading the ones the host sends
//! (options kept raw, so that a comparison is byte for byte too), and showing either in
//! packetdrill's notation.

use std::net::{IpAddr, SocketAddr};

use plugtcp_packetdrill::{
    AccEcnOrder, AccEcnSpec, Md5Spec, SackBlock, TcpOptionSpec, TimestampSpec,
};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// An IP + TCP packet to build.
#[derive(Clone, Debug, Default)]
pub struct TcpPacket {
    pub src: Option<SocketAddr>,
    pub dst: Option<SocketAddr>,
    /// IPv4 TOS / IPv6 traffic class, ECN bits included.
    pub tos: u8,
    pub ttl: u8,
    pub flow_label: u32,
    pub seq: u32,
    pub ack: u32,
    /// TCP flags, AE as bit 8.
    pub flags: u16,
    pub win: u16,
    pub urp: u16,
    /// Options, exactly as they go on the wire (padded by the caller's list).
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
    /// TCP over UDP (RFC 6951): the UDP ports around the segment.
    pub udp: Option<(u16, u16)>,
}

/// Internet checksum over `parts`, folded (not complemented).
fn sum(parts: &[&[u8]]) -> u32 {
    let mut acc: u64 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in part.iter() {
            match odd.take() {
                Some(hi) => acc += u64::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        acc += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

fn checksum(parts: &[&[u8]]) -> [u8; 2] {
    (!(sum(parts) as u16)).to_be_bytes()
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (s, d) => {
            p.extend_from_slice(&v6_octets(s));
            p.extend_from_slice(&v6_octets(d));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    p
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v6) => v6.octets(),
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
    }
}

/// Wraps `l4` (a transport header and payload, checksummed already) in an IP header.
pub fn ip_packet(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    tos: u8,
    ttl: u8,
    flow: u32,
    l4: &[u8],
) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(40 + l4.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + l4.len()) as u16;
            pkt.extend_from_slice(&[0x45, tos]);
            pkt.extend_from_slice(&total.to_be_bytes());
            pkt.extend_from_slice(&[0, 0, 0x40, 0, ttl, proto, 0, 0]);
            pkt.extend_from_slice(&s.octets());
            pkt.extend_from_slice(&d.octets());
            let c = checksum(&[&pkt[..20]]);
            pkt[10..12].copy_from_slice(&c);
        }
        (s, d) => {
            let plen = l4.len() as u16;
            let vtf = (6u32 << 28) | (u32::from(tos) << 20) | (flow & 0xf_ffff);
            pkt.extend_from_slice(&vtf.to_be_bytes());
            pkt.extend_from_slice(&plen.to_be_bytes());
            pkt.extend_from_slice(&[proto, ttl]);
            pkt.extend_from_slice(&v6_octets(s));
            pkt.extend_from_slice(&v6_octets(d));
        }
    }
    pkt.extend_from_slice(l4);
    pkt
}

impl TcpPacket {
    /// The TCP header, options and payload, checksummed for `src` to `dst`.
    pub fn tcp_bytes(&self, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let hlen = 20 + self.options.len();
        let mut tcp = Vec::with_capacity(hlen + self.payload.len());
        tcp.extend_from_slice(&src.port().to_be_bytes());
        tcp.extend_from_slice(&dst.port().to_be_bytes());
        tcp.extend_from_slice(&self.seq.to_be_bytes());
        tcp.extend_from_slice(&self.ack.to_be_bytes());
        tcp.push((((hlen / 4) as u8) << 4) | ((self.flags >> 8) as u8 & 0x01));
        tcp.push(self.flags as u8);
        tcp.extend_from_slice(&self.win.to_be_bytes());
        tcp.extend_from_slice(&[0, 0]);
        tcp.extend_from_slice(&self.urp.to_be_bytes());
        tcp.extend_from_slice(&self.options);
        tcp.extend_from_slice(&self.payload);
        let ph = pseudo_header(src.ip(), dst.ip(), IPPROTO_TCP, tcp.len());
        let c = checksum(&[&ph, &tcp]);
        tcp[16..18].copy_from_slice(&c);
        tcp
    }

    /// The whole IP packet.
    pub fn build(&self) -> Vec<u8> {
        let (Some(src), Some(dst)) = (self.src, self.dst) else {
            return Vec::new();
        };
        let tcp = self.tcp_bytes(src, dst);
        match self.udp {
            None => ip_packet(
                src.ip(),
                dst.ip(),
                IPPROTO_TCP,
                self.tos,
                self.ttl,
                self.flow_label,
                &tcp,
            ),
            Some((sport, dport)) => {
                let mut udp = Vec::with_capacity(8 + tcp.len());
                udp.extend_from_slice(&sport.to_be_bytes());
                udp.extend_from_slice(&dport.to_be_bytes());
                udp.extend_from_slice(&((8 + tcp.len()) as u16).to_be_bytes());
                udp.extend_from_slice(&[0, 0]);
                udp.extend_from_slice(&tcp);
                let ph = pseudo_header(src.ip(), dst.ip(), IPPROTO_UDP, udp.len());
                let c = checksum(&[&ph, &udp]);
                udp[6..8].copy_from_slice(&c);
                ip_packet(
                    src.ip(),
                    dst.ip(),
                    IPPROTO_UDP,
                    self.tos,
                    self.ttl,
                    self.flow_label,
                    &udp,
                )
            }
        }
    }
}

/// Signs the TCP packet `pkt` with TCP-MD5 `key` (its signature option must be there) and
/// redoes its checksum; with `corrupt`, the digest is then made wrong (`md5 invalid`).
pub fn sign_md5(pkt: &mut [u8], key: &[u8], corrupt: bool) -> bool {
    let Some(live) = LivePacket::parse(pkt) else {
        return false;
    };
    if live.udp.is_some() {
        return false;
    }
    let hlen = if live.src.is_ipv4() {
        usize::from(pkt[0] & 0xf) * 4
    } else {
        40
    };
    let (src, dst) = (live.src.ip(), live.dst.ip());
    let tcp = &mut pkt[hlen..];
    if !plugtcp_host::wire::sign(src, dst, tcp, key) {
        return false;
    }
    if corrupt {
        if let Some(at) = plugtcp_host::wire::signature_offset(tcp) {
            tcp[at] ^= 0x80;
        }
    }
    tcp[16..18].fill(0);
    let ph = pseudo_header(src, dst, IPPROTO_TCP, tcp.len());
    let c = checksum(&[&ph, tcp]);
    tcp[16..18].copy_from_slice(&c);
    true
}

/// The IP packet `pkt` (TCP) re-sent as FreeBSD's tunnel sends it: the TCP segment, its
/// checksum zero, in a UDP datagram from `sport` to `dport` (checksummed), same addresses.
pub fn encapsulate(pkt: &[u8], sport: u16, dport: u16) -> Option<Vec<u8>> {
    let live = LivePacket::parse(pkt)?;
    let (src, dst) = (live.src.ip(), live.dst.ip());
    let hlen = if src.is_ipv4() {
        usize::from(pkt[0] & 0xf) * 4
    } else {
        40
    };
    let seg = pkt.get(hlen..hlen + 20 + live.options.len() + live.payload.len())?;
    let mut udp = Vec::with_capacity(8 + seg.len());
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&((8 + seg.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(seg);
    udp[8 + 16..8 + 18].fill(0);
    let c = checksum(&[&pseudo_header(src, dst, IPPROTO_UDP, udp.len()), &udp]);
    udp[6..8].copy_from_slice(&c);
    let flow = if src.is_ipv6() {
        u32::from_be_bytes([0, pkt[1] & 0x0f, pkt[2], pkt[3]])
    } else {
        0
    };
    Some(ip_packet(
        src,
        dst,
        IPPROTO_UDP,
        live.tos,
        live.ttl,
        flow,
        &udp,
    ))
}

/// The TCP segment a TCP-over-UDP IP packet carries.
pub fn udp_payload(pkt: &[u8]) -> Option<&[u8]> {
    let hlen = match pkt.first()? >> 4 {
        4 => usize::from(pkt[0] & 0xf) * 4,
        6 => 40,
        _ => return None,
    };
    let l4 = pkt.get(hlen..)?;
    let len = usize::from(u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]));
    l4.get(8..len)
}

/// An ICMP or ICMPv6 error from `src` to `dst` quoting `quoted` (an IP packet's first
/// bytes: the header and 8 bytes of TCP, as RFC 792 asks).
pub fn icmp_error(
    src: IpAddr,
    dst: IpAddr,
    icmp_type: u8,
    code: u8,
    mtu: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut m = vec![icmp_type, code, 0, 0];
    let v6 = src.is_ipv6();
    if v6 {
        // Packet Too Big carries the MTU in 32 bits; the others have 4 unused bytes.
        m.extend_from_slice(&mtu.to_be_bytes());
    } else {
        // Fragmentation needed: "next-hop MTU" in the low 16 bits (RFC 1191).
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&(mtu as u16).to_be_bytes());
    }
    m.extend_from_slice(quoted);
    let c = if v6 {
        let ph = pseudo_header(src, dst, IPPROTO_ICMPV6, m.len());
        checksum(&[&ph, &m])
    } else {
        checksum(&[&m])
    };
    m[2..4].copy_from_slice(&c);
    let proto = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    ip_packet(src, dst, proto, 0, 64, 0, &m)
}

/// A TCP packet the host sent, as read off the wire.
#[derive(Clone, Debug)]
pub struct LivePacket {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub tos: u8,
    pub ttl: u8,
    pub seq: u32,
    pub ack: u32,
    pub flags: u16,
    pub win: u16,
    pub urp: u16,
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
    pub udp: Option<(u16, u16)>,
    /// The IP header checksum was right (IPv6 has none).
    pub ip_sum_ok: bool,
    pub tcp_sum_ok: bool,
    /// A TCP-MD5 signature's digest was right for the host's key (`None`: no signature,
    /// or not checked).
    pub md5_ok: Option<bool>,
}

impl LivePacket {
    /// Reads an IPv4 or IPv6 packet carrying TCP (or TCP in UDP); `None` for anything
    /// else.
    pub fn parse(pkt: &[u8]) -> Option<LivePacket> {
        let version = pkt.first()? >> 4;
        let (src_ip, dst_ip, proto, tos, ttl, l4, ip_sum_ok) = match version {
            4 => {
                let hlen = usize::from(pkt[0] & 0xf) * 4;
                let total = usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]));
                if hlen < 20 || total < hlen || total > pkt.len() {
                    return None;
                }
                let s: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
                let d: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
                (
                    IpAddr::from(s),
                    IpAddr::from(d),
                    pkt[9],
                    pkt[1],
                    pkt[8],
                    &pkt[hlen..total],
                    sum(&[&pkt[..hlen]]) == 0xffff,
                )
            }
            6 => {
                if pkt.len() < 40 {
                    return None;
                }
                let plen = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
                let end = 40 + plen;
                let s: [u8; 16] = pkt[8..24].try_into().ok()?;
                let d: [u8; 16] = pkt[24..40].try_into().ok()?;
                let tclass = ((pkt[0] & 0x0f) << 4) | (pkt[1] >> 4);
                (
                    IpAddr::from(s),
                    IpAddr::from(d),
                    pkt[6],
                    tclass,
                    pkt[7],
                    pkt.get(40..end)?,
                    true,
                )
            }
            _ => return None,
        };
        let (tcp, udp) = match proto {
            IPPROTO_TCP => (l4, None),
            IPPROTO_UDP if l4.len() >= 8 => (
                &l4[8..],
                Some((
                    u16::from_be_bytes([l4[0], l4[1]]),
                    u16::from_be_bytes([l4[2], l4[3]]),
                )),
            ),
            _ => return None,
        };
        if tcp.len() < 20 {
            return None;
        }
        let hlen = usize::from(tcp[12] >> 4) * 4;
        if hlen < 20 || hlen > tcp.len() {
            return None;
        }
        // Over UDP the UDP checksum covers the segment and FreeBSD leaves the TCP one zero.
        let tcp_sum_ok = match udp {
            None => sum(&[&pseudo_header(src_ip, dst_ip, IPPROTO_TCP, tcp.len()), tcp]) == 0xffff,
            Some(_) => {
                let ph = pseudo_header(src_ip, dst_ip, IPPROTO_UDP, l4.len());
                tcp[16..18] == [0, 0] && sum(&[&ph, l4]) == 0xffff
            }
        };
        Some(LivePacket {
            src: SocketAddr::new(src_ip, u16::from_be_bytes([tcp[0], tcp[1]])),
            dst: SocketAddr::new(dst_ip, u16::from_be_bytes([tcp[2], tcp[3]])),
            tos,
            ttl,
            seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
            flags: (u16::from(tcp[12] & 0x01) << 8) | u16::from(tcp[13]),
            win: u16::from_be_bytes([tcp[14], tcp[15]]),
            urp: u16::from_be_bytes([tcp[18], tcp[19]]),
            options: tcp[20..hlen].to_vec(),
            payload: tcp[hlen..].to_vec(),
            udp,
            ip_sum_ok,
            tcp_sum_ok,
            md5_ok: None,
        })
    }
}

/// What an option list encodes to, byte for byte. `ts_val` fills a `TS val ...`.
pub fn encode_options(list: &[TcpOptionSpec], ts_val: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for o in list {
        match o {
            TcpOptionSpec::Eol => out.push(0),
            TcpOptionSpec::Nop => out.push(1),
            TcpOptionSpec::Mss(m) => {
                out.extend_from_slice(&[2, 4]);
                out.extend_from_slice(&m.to_be_bytes());
            }
            TcpOptionSpec::WindowScale(s) => out.extend_from_slice(&[3, 3, s.unwrap_or(0)]),
            TcpOptionSpec::SackPermitted => out.extend_from_slice(&[4, 2]),
            TcpOptionSpec::Sack(blocks) => {
                out.extend_from_slice(&[5, (2 + 8 * blocks.len()) as u8]);
                for b in blocks {
                    out.extend_from_slice(&b.left.to_be_bytes());
                    out.extend_from_slice(&b.right.to_be_bytes());
                }
            }
            TcpOptionSpec::Timestamp(ts) => {
                out.extend_from_slice(&[8, 10]);
                out.extend_from_slice(&ts.val.unwrap_or(ts_val).to_be_bytes());
                out.extend_from_slice(&ts.ecr.to_be_bytes());
            }
            TcpOptionSpec::FastOpen(cookie) => {
                out.extend_from_slice(&[34, (2 + cookie.len()) as u8]);
                out.extend_from_slice(cookie);
            }
            TcpOptionSpec::FastOpenExp(cookie) => {
                out.extend_from_slice(&[254, (4 + cookie.len()) as u8, 0xf9, 0x89]);
                out.extend_from_slice(cookie);
            }
            TcpOptionSpec::Md5(spec) => {
                out.extend_from_slice(&[19, 18]);
                let digest = match spec {
                    Md5Spec::Digest(d) => {
                        let mut x = [0u8; 16];
                        let n = d.len().min(16);
                        x[..n].copy_from_slice(&d[..n]);
                        x
                    }
                    _ => [0u8; 16],
                };
                out.extend_from_slice(&digest);
            }
            TcpOptionSpec::AccEcn(AccEcnSpec {
                order,
                experimental,
                counters,
            }) => {
                let len = 2 + 3 * counters.len() + if *experimental { 2 } else { 0 };
                if *experimental {
                    let exid: u16 = if *order == AccEcnOrder::Order0 {
                        0xacc0
                    } else {
                        0xacc1
                    };
                    out.extend_from_slice(&[254, len as u8]);
                    out.extend_from_slice(&exid.to_be_bytes());
                } else {
                    let kind = if *order == AccEcnOrder::Order0 {
                        172
                    } else {
                        174
                    };
                    out.extend_from_slice(&[kind, len as u8]);
                }
                for c in counters {
                    out.extend_from_slice(&c.to_be_bytes()[1..]);
                }
            }
            TcpOptionSpec::AckRateRequest(rate) => {
                out.extend_from_slice(&[254, if rate.is_some() { 5 } else { 4 }, 0x00, 0xac]);
                if let Some(r) = rate {
                    out.push(*r as u8);
                }
            }
            TcpOptionSpec::Raw { kind, data } => {
                out.push(*kind);
                if *kind > 1 {
                    out.push((2 + data.len()) as u8);
                }
                out.extend_from_slice(data);
            }
        }
    }
    out
}

/// The options in `raw` as a script would write them (for messages). Malformed bytes come
/// out as `opt KIND HEX` so that nothing is hidden.
pub fn decode_options(raw: &[u8]) -> Vec<TcpOptionSpec> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let kind = raw[i];
        if kind == 0 {
            out.push(TcpOptionSpec::Eol);
            i += 1;
            continue;
        }
        if kind == 1 {
            out.push(TcpOptionSpec::Nop);
            i += 1;
            continue;
        }
        let Some(&len) = raw.get(i + 1) else {
            out.push(TcpOptionSpec::Raw {
                kind,
                data: Vec::new(),
            });
            break;
        };
        let len = usize::from(len);
        if len < 2 || i + len > raw.len() {
            out.push(TcpOptionSpec::Raw {
                kind,
                data: raw[i + 1..].to_vec(),
            });
            break;
        }
        let body = &raw[i + 2..i + len];
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let o = match (kind, len) {
            (2, 4) => TcpOptionSpec::Mss(u16::from_be_bytes([body[0], body[1]])),
            (3, 3) => TcpOptionSpec::WindowScale(Some(body[0])),
            (4, 2) => TcpOptionSpec::SackPermitted,
            (5, l) if l >= 2 && (l - 2) % 8 == 0 => TcpOptionSpec::Sack(
                body.chunks_exact(8)
                    .map(|c| SackBlock {
                        left: be32(&c[..4]),
                        right: be32(&c[4..]),
                    })
                    .collect(),
            ),
            (8, 10) => TcpOptionSpec::Timestamp(TimestampSpec {
                val: Some(be32(&body[..4])),
                ecr: be32(&body[4..]),
                ecr_absolute: false,
            }),
            (19, 18) => TcpOptionSpec::Md5(Md5Spec::Digest(body.to_vec())),
            (34, _) => TcpOptionSpec::FastOpen(body.to_vec()),
            (254, l) if l >= 4 && body[..2] == [0xf9, 0x89] => {
                TcpOptionSpec::FastOpenExp(body[2..].to_vec())
            }
            _ => TcpOptionSpec::Raw {
                kind,
                data: body.to_vec(),
            },
        };
        out.push(o);
        i += len;
    }
    out
}

/// Where the TS val of an option list sits in its encoding, if it has one.
pub fn ts_val_offset(raw: &[u8]) -> Option<usize> {
    option_body_offset(raw, 8, 10)
}

/// Where the MD5 digest of an option list sits, if it has one.
pub fn md5_offset(raw: &[u8]) -> Option<usize> {
    option_body_offset(raw, 19, 18)
}

/// Where the body of the first option of `kind` and length `len` sits in an option list.
fn option_body_offset(raw: &[u8], kind: u8, len: usize) -> Option<usize> {
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            0 | 1 => i += 1,
            k => {
                let l = usize::from(*raw.get(i + 1)?);
                if l < 2 {
                    return None;
                }
                if k == kind && l == len && i + len <= raw.len() {
                    return Some(i + 2);
                }
                i += l;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip() {
        let list = vec![
            TcpOptionSpec::Mss(1460),
            TcpOptionSpec::Nop,
            TcpOptionSpec::WindowScale(Some(6)),
            TcpOptionSpec::SackPermitted,
            TcpOptionSpec::Timestamp(TimestampSpec {
                val: Some(100),
                ecr: 7,
                ecr_absolute: false,
            }),
        ];
        let raw = encode_options(&list, 0);
        assert_eq!(raw.len(), 20);
        assert_eq!(decode_options(&raw), list);
        assert_eq!(ts_val_offset(&raw), Some(12));
    }

    #[test]
    fn built_packet_reads_back_with_good_sums() {
        let p = TcpPacket {
            src: Some("192.0.2.1:40000".parse().unwrap()),
            dst: Some("192.168.0.1:8080".parse().unwrap()),
            ttl: 64,
            seq: 5,
            ack: 9,
            flags: 0x12,
            win: 1000,
            options: encode_options(&[TcpOptionSpec::Mss(1000)], 0),
            payload: vec![0; 3],
            ..Default::default()
        };
        let live = LivePacket::parse(&p.build()).unwrap();
        assert!(live.ip_sum_ok && live.tcp_sum_ok);
        assert_eq!(
            (live.seq, live.ack, live.flags, live.win),
            (5, 9, 0x12, 1000)
        );
        assert_eq!(live.payload.len(), 3);
        let v6 = TcpPacket {
            src: Some("[2001:db8::1]:40000".parse().unwrap()),
            dst: Some("[fd3d:fa7b:d17d::1]:8080".parse().unwrap()),
            tos: 0x02,
            ttl: 64,
            ..Default::default()
        };
        let live = LivePacket::parse(&v6.build()).unwrap();
        assert!(live.tcp_sum_ok);
        assert_eq!(live.tos, 0x02);
    }
}
