//! Benchmarks behind `plugtcp bench ...`. Each compares variants side by side in one run, so
//! that the ratio stays meaningful on a shared, noisy machine.

pub mod bulk;
pub mod cc_switch;
pub mod conns;
pub mod dispatch;
pub mod echo;
pub mod metrics;
pub mod shards;
pub mod stack_switch;
pub mod tun;

/// A veth pair between namespaces `a` and `b`: `devs[0]` with `addrs[0]`/24 in `a`,
/// `devs[1]` with `addrs[1]`/24 in `b`, both up, and each namespace's loopback up.
pub(crate) fn veth_pair(
    a: &plugtcp_io::netns::Netns,
    b: &plugtcp_io::netns::Netns,
    devs: [&str; 2],
    addrs: [&str; 2],
) -> Result<(), String> {
    let link = std::process::Command::new("ip")
        .args([
            "link",
            "add",
            devs[0],
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
        ])
        .args(["name", devs[1], "netns", b.name()])
        .output()
        .map_err(|e| format!("ip link add: {e}"))?;
    if !link.status.success() {
        return Err(format!(
            "ip link add veth: {}",
            String::from_utf8_lossy(&link.stderr).trim()
        ));
    }
    for (ns, dev, addr) in [(a, devs[0], addrs[0]), (b, devs[1], addrs[1])] {
        ns.ok(&["ip", "link", "set", "lo", "up"])
            .and_then(|()| ns.ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", dev]))
            .and_then(|()| ns.ok(&["ip", "link", "set", dev, "up"]))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Deterministic pseudo-random bytes (xorshift64), so misplaced data does not match: the
/// payload of benchmarks and tests.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Median of a few samples.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A number with an optional k, m or g suffix (powers of `unit`).
pub fn parse_scaled(s: &str, unit: u64) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&s[..s.len() - 1], unit),
        Some('m') => (&s[..s.len() - 1], unit * unit),
        Some('g') => (&s[..s.len() - 1], unit * unit * unit),
        _ => (s, 1),
    };
    let v: f64 = num.parse().map_err(|_| format!("not a number: {s}"))?;
    if v.is_nan() || v < 0.0 {
        return Err(format!("must not be negative: {s}"));
    }
    Ok((v * mul as f64) as u64)
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_scaled(s, 1024)
}

pub fn parse_rate(s: &str) -> Result<u64, String> {
    parse_scaled(s, 1000)
}
