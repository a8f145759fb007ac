//! The wire parser on arbitrary bytes: IPv4/IPv6 and TCP headers, options, checksums, the
//! TCP-MD5 option, UDP-encapsulated segments. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plugtcp_host::wire;

fuzz_target!(|data: &[u8]| {
    let _ = wire::parse(data);
    if let Ok(u) = wire::parse_unverified(data) {
        let _ = u.headers().payload.len();
        let _ = u.verify();
    }
    if let Some((src, dst, tcp)) = wire::tcp_segment(data) {
        let _ = wire::signature_offset(tcp);
        let _ = wire::md5_signature_ok(src, dst, tcp, b"key");
        let mut buf = vec![0u8; tcp.len() + 40];
        let _ = wire::wrap_tcp(&mut buf, src, dst, tcp);
        let _ = wire::wrap_tcp_partial(&mut buf, src, dst, tcp);
    }
    let mut copy = data.to_vec();
    if copy.len() > 4 {
        let (start, offset) = (usize::from(data[0]), usize::from(data[1]));
        let _ = wire::complete_checksum(&mut copy, start, offset);
    }
});
