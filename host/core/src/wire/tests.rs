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
        ..Default::default()
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
    let names: std::collections::HashSet<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
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
        if o.has(to::FASTOPEN) {
            e.tfo_len = o.tfo_len;
            e.tfo_cookie = o.tfo_cookie;
        }
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
            TcpOptionElement::MaximumSegmentSize(m) => (o.flags, o.mss) = (o.flags | to::MSS, m),
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
        // A cookie request, or a cookie of 4, 6 or 8 bytes (longer ones need not fit
        // beside all the other SYN options, and are then left out).
        (prop::sample::select(vec![0u8, 4, 6, 8]), any::<[u8; 8]>()),
    )
        .prop_map(
            |(flags, mss, wscale, nsacks, (tsval, tsecr), s, (tfo_len, cookie))| {
                let mut tfo_cookie = [0u8; 16];
                tfo_cookie[..usize::from(tfo_len)].copy_from_slice(&cookie[..usize::from(tfo_len)]);
                TcpOpts {
                    flags,
                    mss,
                    wscale,
                    nsacks,
                    tsval,
                    tsecr,
                    sacks: s.map(|(start, end)| SackBlock { start, end }),
                    tfo_len: if flags & to::FASTOPEN != 0 {
                        tfo_len
                    } else {
                        0
                    },
                    tfo_cookie: if flags & to::FASTOPEN != 0 {
                        tfo_cookie
                    } else {
                        [0; 16]
                    },
                }
            },
        )
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

/// A packet built with a partial checksum (for a device that completes it) is, once the
/// device adds everything from the TCP header on, the packet built with the full one: the
/// field held the pseudo-header sum over the whole TCP length.
#[test]
fn partial_checksum_completes_to_the_full_one() {
    let payload = pattern_bytes(3001);
    for (src, dst, ip_hlen) in [(A4, B4, 20), (A6, B6, 40)] {
        let seg = ack_seg(&payload);
        let full = build_vec(src, dst, &seg, &[&payload[..1000], &payload[1000..]]);
        let mut buf = vec![0u8; MAX_HEADER + 4096];
        let n = build_finished(
            &mut buf,
            sa(src),
            sa(dst),
            &seg,
            &[&payload[..1000], &payload[1000..]],
            (64, 0),
            Finish::PartialChecksum,
        )
        .unwrap();
        let mut partial = buf[..n].to_vec();
        assert_eq!(partial.len(), full.len());
        assert_ne!(partial, full, "the checksum is left to the device");
        assert!(complete_checksum(&mut partial, ip_hlen, 16));
        assert_eq!(partial, full);
    }
}

fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + 7) as u8).collect()
}
