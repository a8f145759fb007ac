//! A host's whole receive path: a listener and an established connection with data in
//! flight both ways, then records from the input: raw packets (anything: IPv4, IPv6,
//! fragments, ICMP errors), TCP segments built for the connection or the listener with
//! arbitrary flags, sequence and acknowledgment offsets, window, options and payload (the
//! checksum right, so they reach the stacks), time passing, and application calls. Each
//! record's answers go to the peer host and back once. Nothing may panic, in the host or in
//! the stacks (a panic caught in a stack would still be a defect). The first byte picks the
//! stack and whether the listener takes TCP Fast Open SYNs.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use plugtcp_host::conn_table::ConnId;
use plugtcp_host::kld::StaticPlugins;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::wire;
use plugtcp_host::Host;

const MS: u64 = 1_000_000;

fn host(ip: &str, seed: u64, rack: bool) -> Host {
    let h = Host::with_seed(SearchPath::default(), seed);
    h.register_static(&StaticPlugins {
        function_blocks: vec![
            plugtcp_stack_base::function_block(),
            plugtcp_stack_rack::function_block(),
        ],
        cc_modules: vec![plugtcp_cc_newreno::cc_algo(), plugtcp_cc_cubic::cc_algo()],
    });
    let mut h = h;
    h.add_addr(ip.parse().unwrap());
    if rack {
        let _ = h.sysctl_set("net.inet.tcp.functions_default", "rack");
    }
    h
}

/// Moves queued packets between the two hosts until both are quiet (bounded).
fn shuttle(a: &mut Host, b: &mut Host, now: u64) {
    for _ in 0..64 {
        let mut ab = Vec::new();
        let mut ba = Vec::new();
        a.transmit(|p| ab.push(p.to_vec()));
        b.transmit(|p| ba.push(p.to_vec()));
        if ab.is_empty() && ba.is_empty() {
            return;
        }
        a.set_now(now);
        b.set_now(now);
        for p in ab {
            b.input(&p);
        }
        for p in ba {
            a.input(&p);
        }
    }
}

struct Pair {
    a: Host,
    b: Host,
    client: ConnId,
    server: Option<ConnId>,
    now: u64,
}

/// `mode` bit 0: the rack stack; bit 1: the listener takes TCP Fast Open SYNs (bit 2: any
/// cookie, `fastopen.acceptany`), so SYNs with data open connections at once.
fn setup(mode: u8) -> Pair {
    let rack = mode & 1 == 1;
    let mut a = host("10.0.0.1", 1, rack);
    let mut b = host("10.0.0.2", 2, rack);
    let lid = b.listen("10.0.0.2:80".parse().unwrap(), 8).unwrap();
    if mode & 2 != 0 {
        let _ = b.sysctl_set("net.inet.tcp.fastopen.server_enable", "1");
        let acceptany = if mode & 4 != 0 { "1" } else { "0" };
        let _ = b.sysctl_set("net.inet.tcp.fastopen.acceptany", acceptany);
        let _ = b.listener_setsockopt(
            lid,
            plugtcp_abi::sockopt::IPPROTO_TCP,
            plugtcp_abi::sockopt::TCP_FASTOPEN,
            &4i32.to_ne_bytes(),
        );
    }
    let client = a.connect("10.0.0.2:80".parse().unwrap(), None).unwrap();
    let mut now = MS;
    a.advance(now);
    b.advance(now);
    shuttle(&mut a, &mut b, now);
    let server = b.accept(lid).ok();
    // Data in flight both ways.
    let _ = a.send(client, &[0x41; 3000]);
    if let Some(s) = server {
        let _ = b.send(s, &[0x42; 3000]);
    }
    now += MS;
    shuttle(&mut a, &mut b, now);
    Pair {
        a,
        b,
        client,
        server,
        now,
    }
}

/// Reads `n` bytes from the front of `data`, if there are that many.
fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (h, t) = data.split_at(n);
    *data = t;
    Some(h)
}

/// A TCP segment from `from` to `to`, checksummed, from the record's fields.
fn segment(p: &Pair, to_listener: bool, data: &mut &[u8]) -> Option<Vec<u8>> {
    let f = take(data, 12)?;
    let flags = u16::from(f[0]) | (u16::from(f[1] & 1) << 8);
    let seq_off = i16::from_le_bytes([f[2], f[3]]) as i32;
    let ack_off = i16::from_le_bytes([f[4], f[5]]) as i32;
    let win = u16::from_le_bytes([f[6], f[7]]);
    let urp = u16::from_le_bytes([f[8], f[9]]);
    let optlen = (usize::from(f[10]) % 11) * 4;
    let paylen = usize::from(f[11]) * 8;
    let opts = take(data, optlen)?;
    let payload = take(data, paylen.min(data.len()))?;
    let (src, dst): (SocketAddr, SocketAddr) = if to_listener {
        (
            SocketAddr::new("10.0.0.1".parse().unwrap(), 40000 + (f[2] as u16 % 8)),
            "10.0.0.2:80".parse().unwrap(),
        )
    } else {
        let c = p.a.tcpcb(p.client)?;
        let _ = c;
        (p.a.local_addr(p.client)?, "10.0.0.2:80".parse().unwrap())
    };
    // Around what the client would send: its snd_nxt and rcv_nxt.
    let (base_seq, base_ack) =
        p.a.tcpcb(p.client)
            .map_or((0, 0), |tp| (tp.snd_nxt, tp.rcv_nxt));
    let seq = base_seq.wrapping_add(seq_off as u32);
    let ack = base_ack.wrapping_add(ack_off as u32);
    let th_len = 20 + optlen;
    let mut tcp = Vec::with_capacity(th_len + payload.len());
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.push(((th_len / 4) as u8) << 4 | (flags >> 8) as u8);
    tcp.push(flags as u8);
    tcp.extend_from_slice(&win.to_be_bytes());
    tcp.extend_from_slice(&[0, 0]);
    tcp.extend_from_slice(&urp.to_be_bytes());
    tcp.extend_from_slice(opts);
    tcp.extend_from_slice(payload);
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        return None;
    };
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&s.octets());
    pseudo.extend_from_slice(&d.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    let c = wire::inet_checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&c);
    let total = 20 + tcp.len();
    let mut ip = vec![
        0x45,
        f[1] & 0xfc,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ];
    ip.extend_from_slice(&s.octets());
    ip.extend_from_slice(&d.octets());
    let c = wire::ip_header_checksum(&ip);
    ip[10..12].copy_from_slice(&c);
    ip.extend_from_slice(&tcp);
    Some(ip)
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, mut data)) = input.split_first() else {
        return;
    };
    let mut p = setup(first);
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        let Some(kind) = take(&mut data, 1) else {
            break;
        };
        match kind[0] % 5 {
            0 => {
                let Some(len) = take(&mut data, 2) else { break };
                let n = usize::from(u16::from_le_bytes([len[0], len[1]])).min(data.len());
                let pkt = take(&mut data, n).unwrap_or_default();
                p.b.input(pkt);
            }
            1 | 2 => {
                let Some(pkt) = segment(&p, kind[0] % 5 == 2, &mut data) else {
                    break;
                };
                p.b.input(&pkt);
            }
            3 => {
                let Some(d) = take(&mut data, 2) else { break };
                p.now += u64::from(u16::from_le_bytes([d[0], d[1]])) * MS;
                p.a.advance(p.now);
                p.b.advance(p.now);
            }
            _ => {
                let Some(op) = take(&mut data, 1) else { break };
                if let Some(s) = p.server {
                    match op[0] % 6 {
                        0 => {
                            let _ = p.b.send(s, &[0x43; 1000]);
                        }
                        1 => {
                            let _ = p.b.recv(s, &mut buf);
                        }
                        2 => {
                            let _ = p.b.shutdown(s, plugtcp_host::usrreq::Shutdown::Write);
                        }
                        3 => p.b.close(s),
                        4 => {
                            let _ = p.b.tcp_info(s);
                        }
                        _ => {
                            let _ = p.a.send(p.client, &[0x44; 2000]);
                        }
                    }
                }
            }
        }
        let now = p.now;
        shuttle(&mut p.a, &mut p.b, now);
    }
});
