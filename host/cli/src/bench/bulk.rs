//! `plugtcp bench bulk`: two hosts in one thread over a zero-delay in-memory link move a
//! bulk transfer; every byte read is checked against the pattern written. The smoltcp
//! comparison runs the `plugtcp-smoltcp-bulk` binary (smoltcp is a dependency of that
//! benchmark crate only) side by side, case by case.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use plugtcp_abi::TcpState;

use crate::builtins::BuiltinNet as _;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::{SimNet, ADDR_B};

/// One measured transfer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BulkResult {
    pub stack: String,
    pub bytes: u64,
    pub mtu: u32,
    pub buffer: u64,
    /// Checksums left to the link (both stacks alike) rather than computed and verified.
    #[serde(default)]
    pub checksum_offload: bool,
    pub seconds: f64,
    pub gbit_per_s: f64,
}

/// A case and both stacks' results.
#[derive(Debug, serde::Serialize)]
pub struct BulkCase {
    pub mtu: u32,
    pub buffer: u64,
    /// Both stacks with checksum offload (else both compute and verify checksums).
    pub checksum_offload: bool,
    pub plugtcp: BulkResult,
    pub smoltcp: Option<BulkResult>,
    /// plugtcp Gbit/s over smoltcp Gbit/s.
    pub ratio: Option<f64>,
}

/// The pattern: byte i of the stream is PATTERN[i % len]; the length is prime so that it
/// does not line up with segment or buffer sizes.
const PATTERN_LEN: usize = 1_048_573;

fn pattern() -> Vec<u8> {
    (0..PATTERN_LEN)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Moves `bytes` from A to B through plugtcp.
pub fn run_plugtcp(
    bytes: u64,
    mtu: u32,
    buffer: u64,
    checksum_offload: bool,
) -> Result<BulkResult, String> {
    let mut net = SimNet::builtin(SimLinkConfig::default(), 1);
    net.set_checksum_offload(checksum_offload);
    for h in [&mut net.a, &mut net.b] {
        h.mtu = mtu;
        for name in ["sendspace", "recvspace", "recvbuf_max", "sendbuf_max"] {
            h.sysctl_set(&format!("net.inet.tcp.{name}"), &buffer.to_string())
                .map_err(|e| format!("{name}: {e}"))?;
        }
    }
    let mut r = transfer(&mut net, 5001, bytes)?;
    r.checksum_offload = checksum_offload;
    Ok(r)
}

/// Connects A to B on `port` and moves `bytes`, timing from the first byte written to the
/// last read (the handshake is not timed).
pub fn transfer(net: &mut SimNet, port: u16, bytes: u64) -> Result<BulkResult, String> {
    transfer_with(net, port, bytes, |_| {})
}

/// As [`transfer`], calling `tick` once per simulation step of the timed part (what a
/// server's loop does besides moving data: `bench metrics` publishes from it).
pub fn transfer_with(
    net: &mut SimNet,
    port: u16,
    bytes: u64,
    mut tick: impl FnMut(&mut SimNet),
) -> Result<BulkResult, String> {
    let server: SocketAddr = (ADDR_B, port).into();
    let lid = net.b.listen(server, 4).map_err(|e| e.to_string())?;
    let c = net.a.connect(server, None).map_err(|e| e.to_string())?;
    let mut s = None;
    let deadline = net.now + 10_000_000_000;
    if !net.run_until(deadline, |n| {
        s = s.or_else(|| n.b.accept(lid).ok());
        s.is_some() && n.a.state(c) == Some(TcpState::Established)
    }) {
        return Err("handshake did not complete".into());
    }
    let s = s.ok_or("no connection accepted")?;
    let pat = pattern();
    // Sender and receiver walk the pattern independently: the receiver checks each chunk.
    let (mut sent, mut got) = (0u64, 0u64);
    let mut bad = false;
    let t0 = Instant::now();
    // No deadline: a finite one is where an idle network's clock jumps to (here while the
    // reader is behind), after which a timer would land past it.
    let done = net.run_until(u64::MAX, |n| {
        tick(n);
        while sent < bytes {
            let off = (sent % PATTERN_LEN as u64) as usize;
            let len = ((bytes - sent) as usize).min(PATTERN_LEN - off);
            match n.a.send(c, &pat[off..off + len]) {
                Ok(k) => sent += k as u64,
                Err(_) => break,
            }
        }
        // Zero-copy reads, checked in place (smoltcp's side reads the same way).
        while let Ok(k) = n.b.recv_with(s, |run| {
            let mut checked = 0;
            while checked < run.len() {
                let off = ((got + checked as u64) % PATTERN_LEN as u64) as usize;
                let k = (run.len() - checked).min(PATTERN_LEN - off);
                bad |= run[checked..checked + k] != pat[off..off + k];
                checked += k;
            }
            run.len()
        }) {
            if k == 0 {
                break;
            }
            got += k as u64;
        }
        got >= bytes || bad
    });
    let seconds = t0.elapsed().as_secs_f64();
    net.a.abort(c);
    net.b.abort(s);
    net.b.close_listener(lid);
    if bad {
        return Err("received bytes differ from those sent".into());
    }
    if !done || got != bytes {
        return Err(format!("transfer stalled at {got} of {bytes} bytes"));
    }
    Ok(BulkResult {
        stack: "plugtcp".into(),
        bytes,
        mtu: net.a.mtu,
        buffer: net.a.tunables.sendspace as u64,
        checksum_offload: false,
        seconds,
        gbit_per_s: bytes as f64 * 8.0 / seconds / 1e9,
    })
}

/// Runs the smoltcp benchmark binary found next to this executable.
pub fn run_smoltcp(
    exe_dir: &Path,
    bytes: u64,
    mtu: u32,
    buffer: u64,
    checksum_offload: bool,
) -> Result<BulkResult, String> {
    let bin = exe_dir.join("plugtcp-smoltcp-bulk");
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--bytes",
        &bytes.to_string(),
        "--mtu",
        &mtu.to_string(),
        "--buffer",
        &buffer.to_string(),
        "--json",
    ]);
    if checksum_offload {
        cmd.arg("--checksum-offload");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{}: bad output: {e}", bin.display()))?;
    Ok(BulkResult {
        stack: format!("smoltcp {}", v["version"].as_str().unwrap_or("?")),
        bytes: v["bytes"].as_u64().unwrap_or(0),
        mtu,
        buffer,
        checksum_offload,
        seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        gbit_per_s: v["gbit_per_s"].as_f64().unwrap_or(f64::NAN),
    })
}

/// Every case, plugtcp then smoltcp, each case back to back so machine noise hits both;
/// each with checksums computed and verified by both stacks, then with checksum offload
/// for both (the pairings: never one stack with offload against one without).
pub fn run(
    bytes: u64,
    mtus: &[u32],
    buffers: &[u64],
    exe_dir: Option<&Path>,
) -> Result<Vec<BulkCase>, String> {
    let mut cases = Vec::new();
    for &mtu in mtus {
        for &buffer in buffers {
            for checksum_offload in [false, true] {
                let plugtcp = run_plugtcp(bytes, mtu, buffer, checksum_offload)?;
                let smoltcp = match exe_dir {
                    Some(d) => Some(run_smoltcp(d, bytes, mtu, buffer, checksum_offload)?),
                    None => None,
                };
                let ratio = smoltcp.as_ref().map(|s| plugtcp.gbit_per_s / s.gbit_per_s);
                cases.push(BulkCase {
                    mtu,
                    buffer,
                    checksum_offload,
                    plugtcp,
                    smoltcp,
                    ratio,
                });
            }
        }
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both MTUs move the bytes intact, with checksums computed and with checksum offload
    /// (the transfer checks every byte read against the pattern and fails on a difference).
    #[test]
    fn plugtcp_transfers_verify() {
        for mtu in [1500, 65535] {
            for offload in [false, true] {
                let r = run_plugtcp(8 << 20, mtu, 64 * 1024, offload).unwrap();
                assert_eq!(
                    (r.bytes, r.mtu, r.checksum_offload),
                    (8 << 20, mtu, offload)
                );
            }
        }
    }

    /// With checksum offload the link carries partial checksums (the pseudo-header sum, for
    /// the device to complete) and the receiver takes them as they are: the transfer is
    /// intact, and every packet's checksum completes to the right one.
    #[test]
    fn checksum_offload_leaves_checksums_to_the_link() {
        use plugtcp_host::wire;
        let mut net = SimNet::builtin(SimLinkConfig::default(), 1);
        net.set_checksum_offload(true);
        net.record = Some(Vec::new());
        transfer(&mut net, 5001, 1 << 20).unwrap();
        let record = net.record.take().unwrap();
        let data: Vec<_> = record.iter().filter(|p| p.bytes.len() > 100).collect();
        assert!(!data.is_empty());
        for p in data {
            assert_eq!(
                wire::parse(&p.bytes).err(),
                Some(wire::DropReason::BadTcpChecksum)
            );
            let mut whole = p.bytes.clone();
            assert!(wire::complete_checksum(&mut whole, 20, 16));
            assert!(wire::parse(&whole).is_ok());
        }
    }
}
