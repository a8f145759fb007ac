//! A classic pcap (not pcapng) writer for raw IP packets with nanosecond timestamps.
//!
//! The file uses the nanosecond magic `0xa1b23c4d`, written little-endian (readers detect the
//! byte order from the magic), link type `LINKTYPE_RAW` (101: each record is an IPv4 or IPv6
//! packet with no link header) and a snaplen of 65535. Longer packets are truncated to the
//! snaplen in the capture, with their original length recorded.

use std::io::{self, Write};

/// Magic number of nanosecond-resolution pcap files.
pub const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_RAW: raw IPv4/IPv6 packets.
pub const LINKTYPE_RAW: u32 = 101;
pub const SNAPLEN: u32 = 65_535;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Writes packets to `W` in pcap format.
pub struct PcapWriter<W: Write> {
    w: W,
    packets: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the 24-byte global header to `w`.
    pub fn new(mut w: W) -> io::Result<Self> {
        let mut hdr = [0u8; 24];
        hdr[0..4].copy_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
        hdr[4..6].copy_from_slice(&2u16.to_le_bytes()); // version major
        hdr[6..8].copy_from_slice(&4u16.to_le_bytes()); // version minor
                                                        // thiszone and sigfigs (bytes 8..16) stay 0.
        hdr[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        hdr[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
        w.write_all(&hdr)?;
        Ok(PcapWriter { w, packets: 0 })
    }

    /// Appends one packet captured at virtual time `ts_ns` (nanoseconds since the epoch of the
    /// capture). Fails with `InvalidInput` if the seconds or the length do not fit in 32 bits.
    pub fn write_packet(&mut self, ts_ns: u64, pkt: &[u8]) -> io::Result<()> {
        let secs = u32::try_from(ts_ns / NS_PER_SEC)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "timestamp past 2106"))?;
        let nanos = (ts_ns % NS_PER_SEC) as u32;
        let orig_len = u32::try_from(pkt.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too long"))?;
        let incl_len = orig_len.min(SNAPLEN);
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&secs.to_le_bytes());
        rec[4..8].copy_from_slice(&nanos.to_le_bytes());
        rec[8..12].copy_from_slice(&incl_len.to_le_bytes());
        rec[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.w.write_all(&rec)?;
        self.w.write_all(&pkt[..incl_len as usize])?;
        self.packets += 1;
        Ok(())
    }

    /// Number of packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// A backend whose every packet, sent and received, is also written to a pcap file
/// (`plugtcp serve --pcap`). Timestamps count from when the capture began; the file is
/// flushed when the backend is dropped (the runtime stops).
pub struct Captured {
    inner: Box<dyn crate::driver::PacketIo + Send>,
    pcap: PcapWriter<io::BufWriter<std::fs::File>>,
    epoch: std::time::Instant,
}

impl Captured {
    pub fn new(
        inner: Box<dyn crate::driver::PacketIo + Send>,
        path: &std::path::Path,
    ) -> io::Result<Self> {
        let f = std::fs::File::create(path)?;
        Ok(Captured {
            inner,
            pcap: PcapWriter::new(io::BufWriter::new(f))?,
            epoch: std::time::Instant::now(),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

impl crate::driver::PacketIo for Captured {
    fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
        let _ = self.pcap.write_packet(self.now(), pkt);
        self.inner.send(pkt)
    }

    fn recv(
        &mut self,
        buf: &mut [u8],
        wait: Option<std::time::Duration>,
    ) -> io::Result<Option<usize>> {
        let n = self.inner.recv(buf, wait)?;
        if let Some(n) = n {
            let _ = self.pcap.write_packet(self.now(), &buf[..n]);
        }
        Ok(n)
    }

    fn mtu(&self) -> u32 {
        self.inner.mtu()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn encapsulation_port(&mut self, pkt: &[u8], port: u16) {
        self.inner.encapsulation_port(pkt, port)
    }

    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.poll_fd()
    }

    fn arrival_port(&self) -> Option<u16> {
        self.inner.arrival_port()
    }

    fn learn_port(&mut self, pkt: &[u8], port: u16) {
        self.inner.learn_port(pkt, port)
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        if let Err(e) = self.pcap.flush() {
            eprintln!("plugtcp: pcap: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }

    /// A minimal valid IPv4/UDP packet with `payload` bytes of payload.
    fn udp4(payload: usize, id: u16) -> Vec<u8> {
        let len = 28 + payload;
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[192, 0, 2, 1]);
        p[16..20].copy_from_slice(&[192, 0, 2, 2]);
        let mut sum: u32 = p[..20]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        p[20..22].copy_from_slice(&1234u16.to_be_bytes());
        p[22..24].copy_from_slice(&5678u16.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        p
    }

    #[test]
    fn header_and_records_parse_back() {
        let pkts = [udp4(10, 1), udp4(0, 2), udp4(1000, 3)];
        let times = [0u64, 1_500_000_001, 3_999_999_999];
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        for (t, p) in times.iter().zip(&pkts) {
            w.write_packet(*t, p).unwrap();
        }
        assert_eq!(w.packets(), 3);
        let buf = w.into_inner().unwrap();

        assert_eq!(&buf[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(u16_at(&buf, 4), 2);
        assert_eq!(u16_at(&buf, 6), 4);
        assert_eq!(u32_at(&buf, 8), 0); // thiszone
        assert_eq!(u32_at(&buf, 12), 0); // sigfigs
        assert_eq!(u32_at(&buf, 16), 65_535);
        assert_eq!(u32_at(&buf, 20), 101);

        let mut off = 24;
        for (t, p) in times.iter().zip(&pkts) {
            assert_eq!(u64::from(u32_at(&buf, off)), t / 1_000_000_000);
            assert_eq!(u64::from(u32_at(&buf, off + 4)), t % 1_000_000_000);
            assert_eq!(u32_at(&buf, off + 8) as usize, p.len());
            assert_eq!(u32_at(&buf, off + 12) as usize, p.len());
            off += 16;
            assert_eq!(&buf[off..off + p.len()], &p[..]);
            off += p.len();
        }
        assert_eq!(off, buf.len());
    }

    #[test]
    fn long_packets_are_truncated_to_snaplen() {
        let big = vec![0x45u8; 70_000];
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_packet(5, &big).unwrap();
        let buf = w.into_inner().unwrap();
        assert_eq!(u32_at(&buf, 24 + 8), 65_535);
        assert_eq!(u32_at(&buf, 24 + 12), 70_000);
        assert_eq!(buf.len(), 24 + 16 + 65_535);
    }

    #[test]
    fn timestamp_out_of_range_is_an_error() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let err = w.write_packet(u64::MAX, &udp4(0, 0)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(w.packets(), 0);
        assert_eq!(w.into_inner().unwrap().len(), 24);
    }

    #[test]
    fn tcpdump_reads_the_file() {
        let Ok(out) = std::process::Command::new("tcpdump")
            .arg("--version")
            .output()
        else {
            println!("note: tcpdump not installed, skipping tcpdump_reads_the_file");
            return;
        };
        assert!(out.status.success());

        let path = std::env::temp_dir().join(format!("simlink-{}.pcap", std::process::id()));
        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut w = PcapWriter::new(file).unwrap();
        const N: usize = 7;
        for i in 0..N {
            w.write_packet(i as u64 * 1_000_123, &udp4(20 + i, i as u16))
                .unwrap();
        }
        drop(w.into_inner().unwrap());

        let out = std::process::Command::new("tcpdump")
            .args(["-r"])
            .arg(&path)
            .args(["-n", "--nano", "-tt"])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tcpdump failed: {stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), N, "{stdout}");
        // Nanosecond timestamps and the UDP ports must come through intact.
        assert!(lines[1].starts_with("0.001000123 IP 192.0.2.1.1234 > 192.0.2.2.5678: UDP"));
        assert!(lines[6].starts_with("0.006000738 "), "{}", lines[6]);
        assert!(stderr.contains("RAW"), "link type: {stderr}");
    }
}
