//! The `plugtcp` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use plugtcp_cli::bench::{parse_rate, parse_size};
use plugtcp_cli::builtins::BuiltinHost as _;
use plugtcp_cli::control::ControlCmd;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;

#[derive(Parser)]
#[command(
    name = "plugtcp",
    version,
    about = "A userspace TCP with pluggable stacks and congestion control"
)]
struct Cli {
    /// Directory to search for plugins (before PLUGTCP_PLUGIN_PATH and the executable's own
    /// directory); may be repeated.
    #[arg(long = "plugin-dir", global = true)]
    plugin_dir: Vec<PathBuf>,
    /// Do not load the plugins found on the search path at start-up.
    #[arg(long, global = true)]
    no_autoload: bool,
    /// The control socket of a running host: `serve` listens there (mode 0600); kldload,
    /// kldstat, kldunload, sysctl and tcpsso act on that host instead of a new in-process one.
    #[arg(long, global = true, env = "PLUGTCP_CONTROL")]
    control: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load a plugin file (a path, or a name such as `newreno` looked up on the search path).
    Kldload { what: String },
    /// List loaded plugins: id, kind, name, aliases, version, PCB count, file.
    Kldstat {
        #[arg(long)]
        json: bool,
    },
    /// Deregister a plugin (EBUSY while it is the default or in use; -f moves its users to
    /// the default).
    Kldunload {
        name: String,
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Read or set sysctls: `sysctl net.inet.tcp.mssdflt`, `sysctl NAME=VALUE`, `sysctl -a`.
    Sysctl {
        #[arg(short = 'a')]
        all: bool,
        /// Print descriptions instead of values.
        #[arg(short = 'd')]
        describe: bool,
        names: Vec<String>,
    },
    /// List the connections as `ss -ti` does: 4-tuple, state, stack, CC, then wscale, rto,
    /// rtt/rttvar, mss, cwnd, ssthresh, bytes, retransmissions and windows.
    Sockstat {
        #[arg(long)]
        json: bool,
    },
    /// Set a socket option on a connection of a running host (as FreeBSD's tcpsso(8)),
    /// chosen by its 4-tuple: `tcpsso 198.18.0.2:80 198.18.0.1:40000 TCP_CONGESTION cubic`.
    /// Needs --control.
    Tcpsso {
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
        /// TCP_CONGESTION, TCP_FUNCTION_BLK, TCP_NODELAY, TCP_KEEPIDLE, ...
        option: String,
        value: String,
    },
    /// TCP-MD5 keys of a running host (setkey(8)'s tcp-md5 entries): `md5key add ADDR[/LEN]
    /// KEY` (KEY `-`: read from standard input), `md5key del ADDR[/LEN]`, `md5key list`.
    /// Needs --control.
    Md5key {
        /// add, del or list.
        op: String,
        peer: Option<String>,
        key: Option<String>,
    },
    /// Drop a connection of a running host, chosen by its 4-tuple, as FreeBSD's tcpdrop(8):
    /// a RST to the peer, ECONNABORTED for the application. Needs --control.
    Tcpdrop {
        local: std::net::SocketAddr,
        remote: std::net::SocketAddr,
    },
    /// Two hosts over the simulated link: a bulk transfer checked by SHA-256, and a summary.
    Demo {
        #[arg(long)]
        json: bool,
        /// Bytes to move (suffixes K, M, G as powers of 1024).
        #[arg(long, default_value = "256M", value_parser = parse_size)]
        size: u64,
        /// Link bandwidth in bit/s (suffixes k, m, g as powers of 1000).
        #[arg(long, default_value = "1g", value_parser = parse_rate)]
        bandwidth: u64,
        /// Round-trip time in milliseconds.
        #[arg(long, default_value_t = 20.0)]
        rtt_ms: f64,
        /// Packet loss probability per direction.
        #[arg(long, default_value_t = 0.001)]
        loss: f64,
        /// Bottleneck queue, in bandwidth-delay products.
        #[arg(long, default_value_t = 1.0)]
        queue_bdp: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Function block for both hosts (default: net.inet.tcp.functions_default).
        #[arg(long)]
        stack: Option<String>,
        /// CC module for both hosts (default: net.inet.tcp.cc.algorithm).
        #[arg(long)]
        cc: Option<String>,
        /// Write every packet on the link to this pcap file.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// Write the sender's siftr trace (a CSV line per ACK) to this file.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Serve the sending host's Prometheus metrics over HTTP on ADDR while the demo runs
        /// (127.0.0.1:9464 when the flag has no value; port 0 picks a free port, printed on
        /// stderr), published every second of wall time and at the end.
        #[arg(long, value_name = "ADDR", num_args = 0..=1,
              default_missing_value = plugtcp_host::metrics::DEFAULT_ADDR)]
        metrics: Option<std::net::SocketAddr>,
        /// With --metrics: keep serving this many seconds after the transfer, so that
        /// Prometheus scrapes the final values.
        #[arg(long, default_value_t = 0, requires = "metrics")]
        hold: u64,
    },
    /// Run packetdrill scripts against one host on the virtual clock, the script playing
    /// the remote peer; exit status 0 when every script passes (or fails as a `.exfail`
    /// file beside it expects).
    Packetdrill(PacketdrillArgs),
    /// Draw a siftr trace (from `demo --trace`, TCP_SIFTR or net.inet.siftr) as a PNG:
    /// cwnd, ssthresh and flight size over time, and the smoothed RTT.
    Plot {
        trace: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Run a service on a real backend until SIGINT/SIGTERM (prints ADDRESS:PORT first).
    Serve {
        #[command(flatten)]
        io: IoArgs,
        #[arg(long, value_enum)]
        service: ServiceKind,
        /// Port to listen on (default: the service's well-known port; http 80).
        #[arg(long)]
        port: Option<u16>,
        /// http: the directory to serve.
        #[arg(long)]
        root: Option<PathBuf>,
        /// forward: the kernel socket address to connect each connection to.
        #[arg(long)]
        to: Option<std::net::SocketAddr>,
        /// Function block for this listener's connections.
        #[arg(long)]
        stack: Option<String>,
        /// CC module for this listener's connections.
        #[arg(long)]
        cc: Option<String>,
        /// Serve Prometheus metrics over HTTP on ADDR (127.0.0.1:9464 when the flag has no
        /// value; port 0 picks a free port, printed on stderr).
        #[arg(long, value_name = "ADDR", num_args = 0..=1,
              default_missing_value = plugtcp_host::metrics::DEFAULT_ADDR)]
        metrics: Option<std::net::SocketAddr>,
        /// Threads, each running its own host with its share of the connections
        /// (default: one per core; one with --pcap).
        #[arg(long)]
        shards: Option<usize>,
        /// Accept connections to any address and port routed into the device (the
        /// connection's local address is where it was addressed); with --service forward,
        /// each is forwarded to that address through the kernel.
        #[arg(long)]
        transparent: bool,
    },
    /// Download an http:// URL over plugtcp (the body to -o FILE, or stdout).
    Get {
        url: String,
        #[command(flatten)]
        io: IoArgs,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// The CC lab: experiments described in scenario files (docs/lab.md).
    Lab {
        #[command(subcommand)]
        which: LabCmd,
    },
}

#[derive(Subcommand)]
enum LabCmd {
    /// Runs every sweep point and seed of SCENARIO on the simulated network (and with
    /// --kernel on the Linux kernel's TCP too), prints the summary and writes the results
    /// directory: CSV time series, summary.json/csv, plots and report.html.
    Run {
        scenario: PathBuf,
        /// Results directory (default: lab-results/<scenario name, made a file name>).
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
        /// Simulator runs at once (default: one per core).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// Also run each point with the Linux kernel's TCP over veth pairs shaped by tc
        /// (needs root and iproute2), reported side by side.
        #[arg(long)]
        kernel: bool,
        /// Replace the scenario's duration (e.g. 5s for a quick look).
        #[arg(long, value_parser = parse_dur)]
        duration: Option<plugtcp_cli::lab::units::Dur>,
        /// Set a field before the sweep, as `[sweep]` names it: `--set flow.cc=mine`,
        /// `--set link.queue=4bdp`, `--set flow.1.rtt=80ms` (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// Print the results as JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Serve each run's samples as Prometheus gauges on ADDR while the lab runs.
        #[arg(long, value_name = "ADDR", num_args = 0..=1,
              default_missing_value = plugtcp_host::metrics::DEFAULT_ADDR)]
        metrics: Option<std::net::SocketAddr>,
        /// With --metrics: keep serving this many seconds after the last run.
        #[arg(long, default_value_t = 0)]
        hold: u64,
    },
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}`: expected FIELD=VALUE"))
}

fn parse_dur(s: &str) -> Result<plugtcp_cli::lab::units::Dur, String> {
    plugtcp_cli::lab::units::Dur::parse(s)
}

#[derive(Subcommand)]
enum Bench {
    /// Bulk transfers between the kernel's TCP and plugtcp on a TUN device, both ways, over
    /// 1 and 8 connections, with and without IFF_VNET_HDR, on one shard and on all, against
    /// kernel to kernel over a veth pair, in namespaces of its own (needs root).
    Tun {
        /// Bytes per transfer (suffixes K, M, G).
        #[arg(long, default_value = "256M", value_parser = parse_size)]
        bytes: u64,
        /// Rounds of every transfer (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Parallel connections (repeatable; default 1 and 8).
        #[arg(long = "connections")]
        connections: Vec<usize>,
        /// Shards for plugtcp (repeatable; default 1 and one per core).
        #[arg(long = "shards")]
        shards: Vec<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Request/response latency: kernel clients doing round trips of a small request
    /// (TCP_NODELAY) against a tokio echo server on plugtcp over a TUN device, against the
    /// same server on the kernel over a veth pair, in namespaces of its own (needs root).
    Echo {
        /// Concurrent clients, one connection each.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Measured round trips per client.
        #[arg(long, default_value_t = 5000)]
        round_trips: u64,
        /// Bytes per request.
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long)]
        json: bool,
    },
    /// Sharding: two plugtcp hosts over TCP over UDP on loopback, one shard each against two
    /// each in the same run: aggregate bulk goodput and handshakes per second.
    Shards {
        /// Measured seconds per load and configuration.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Concurrent bulk connections in all.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Handshakes in flight in all.
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Rounds of both configurations (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    /// Many concurrent connections: handshakes/s, resident bytes per idle connection, and
    /// bulk throughput with them open against without.
    Conns {
        #[arg(long, default_value_t = 100_000)]
        connections: usize,
        /// Bytes of the bulk transfers (suffixes K, M, G).
        #[arg(long, default_value = "256M", value_parser = parse_size)]
        bulk: u64,
        #[arg(long)]
        json: bool,
    },
    /// Bulk throughput between two hosts in one thread over a zero-delay in-memory link, at
    /// MTU 1500 and 65535 with 64 KiB and 4 MiB buffers, against smoltcp in the same run.
    Bulk {
        /// Bytes per transfer (suffixes K, M, G as powers of 1024).
        #[arg(long, default_value = "1G", value_parser = parse_size)]
        bytes: u64,
        #[arg(long)]
        json: bool,
        /// Skip the smoltcp comparison.
        #[arg(long)]
        no_smoltcp: bool,
        /// Only this MTU (default: 1500 and 65535).
        #[arg(long)]
        mtu: Option<u32>,
        /// Only this buffer size (default: 64K and 4M).
        #[arg(long, value_parser = parse_size)]
        buffer: Option<u64>,
    },
    /// Congestion-control experiments on the simulated link (virtual time, deterministic):
    /// one flow and two competing flows per module on 100 Mbit/s, 40 ms RTT, a one-BDP queue
    /// (dctcp with CE marking above BDP/7): utilisation, Jain's index, queueing delay; then
    /// the rate-based table: utilisation with 1% loss and with a 0.1-BDP queue, queueing
    /// delay with a 4-BDP queue, Jain's index of two flows and against cubic.
    Cc {
        /// Modules to run (default: the eight FreeBSD ships and bbr); bbr, cubic and newreno
        /// also get rows in the rate-based table (bbr on base and rack, and the bbr block).
        #[arg(long = "cc")]
        ccs: Vec<String>,
        /// Measured virtual seconds (after 10 s of warm-up).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Seed of the link and the hosts.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Virtual seconds of warm-up before measuring.
        #[arg(long, default_value_t = 10)]
        warmup: u64,
        /// Bottleneck queue in bandwidth-delay products.
        #[arg(long, default_value_t = 1.0)]
        queue_bdp: f64,
        /// A sysctl for both hosts, NAME=VALUE (repeatable; `net.inet.tcp.` may be left out).
        #[arg(long = "sysctl")]
        sysctls: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The cost of a TCP_CONGESTION switch on a live connection (ns) and the goodput in the
    /// RTT after it.
    CcSwitch {
        #[arg(long, default_value_t = 10_000)]
        switches: u64,
        #[arg(long)]
        json: bool,
    },
    /// The cost of one TCP_FUNCTION_BLK switch (µs, median) on an established connection
    /// with 1 MiB in flight on the simulated link, alternating between two blocks, and
    /// whether the transfer after the switches delivers the same bytes (digest).
    StackSwitch {
        /// The two blocks to alternate between, A,B (any two registered names).
        #[arg(long, default_value = "base,rack")]
        blocks: String,
        /// Switches timed (one sample each).
        #[arg(long, default_value_t = 21)]
        switches: usize,
        /// Bytes of the transfer (suffixes K, M, G).
        #[arg(long, default_value = "64M", value_parser = parse_size)]
        bytes: u64,
        #[arg(long)]
        json: bool,
    },
    /// Bulk throughput (as `bench bulk`, one case) with metrics on against off, samples
    /// interleaved, medians compared. On: each host has a Prometheus recorder, publishes every
    /// --publish-ms and both expositions are rendered every --scrape-ms (serve publishes
    /// every 1000 ms; the defaults are shorter so that each sub-second sample does both
    /// several times).
    Metrics {
        /// Bytes per sample (suffixes K, M, G).
        #[arg(long, default_value = "4G", value_parser = parse_size)]
        bytes: u64,
        /// Samples per variant.
        #[arg(long, default_value_t = 7)]
        samples: usize,
        #[arg(long, default_value_t = 1500)]
        mtu: u32,
        #[arg(long, default_value = "64K", value_parser = parse_size)]
        buffer: u64,
        #[arg(long, default_value_t = 100)]
        publish_ms: u64,
        #[arg(long, default_value_t = 250)]
        scrape_ms: u64,
        #[arg(long)]
        json: bool,
    },
    /// ns per CC hook call through the loaded .so against the same module linked statically.
    Dispatch {
        #[arg(long, default_value_t = 5_000_000)]
        calls: u64,
        #[arg(long, default_value_t = 9)]
        samples: usize,
        /// Print JSON (the default output is JSON too, pretty-printed).
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum IoKind {
    Tun,
    Udp,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ServiceKind {
    Echo,
    Discard,
    Chargen,
    Http,
    Forward,
}

/// The backend of `serve` and `get`.
#[derive(clap::Args, Debug)]
struct IoArgs {
    #[arg(long, value_enum)]
    io: IoKind,
    /// tun: the device (created if missing; `%d` picks a free number).
    #[arg(long, default_value = "plugtcp%d")]
    tun: String,
    /// tun: this host's addresses (repeatable). Without any, `serve` sets the device up
    /// itself (kernel 198.18.0.1/24, plugtcp 198.18.0.2).
    #[arg(long = "addr")]
    addrs: Vec<std::net::IpAddr>,
    /// tun: IFF_VNET_HDR, taking the kernel's checksum and TSO offloads (64 KiB
    /// super-packets in, partial checksums completed).
    #[arg(long)]
    vnet_hdr: bool,
    /// udp: the local encapsulation socket (its address is the host's).
    #[arg(long)]
    udp_bind: Option<std::net::SocketAddr>,
    /// udp: the peer's encapsulation port, for connections this host opens.
    #[arg(long)]
    udp_peer_port: Option<u16>,
    /// Write every packet sent and received to this pcap file.
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Faults on what this host sends: loss=P,delay=2ms,jitter=1ms,reorder=P,duplicate=P,
    /// corrupt=P,rate=100m,seed=N.
    #[arg(long)]
    fault_out: Option<String>,
    /// Faults on what this host receives (same keys).
    #[arg(long)]
    fault_in: Option<String>,
    /// Set a sysctl first (`NAME=VALUE`; `net.inet.tcp.` may be left out); repeatable.
    #[arg(long = "sysctl")]
    sysctls: Vec<String>,
}

fn io_config(cli: &Cli, a: &IoArgs) -> Result<plugtcp_cli::serve::IoConfig, String> {
    use plugtcp_cli::serve::{parse_faults, IoChoice, IoConfig};
    let io = match a.io {
        IoKind::Tun => IoChoice::Tun {
            name: a.tun.clone(),
            addrs: a.addrs.clone(),
            vnet_hdr: a.vnet_hdr,
        },
        IoKind::Udp => IoChoice::Udp {
            bind: a.udp_bind.ok_or("--io udp needs --udp-bind ADDR:PORT")?,
            peer_port: a.udp_peer_port,
        },
    };
    let faults = |f: &Option<String>| f.as_deref().map(parse_faults).transpose();
    let sysctls = a
        .sysctls
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("--sysctl {kv}: expected NAME=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IoConfig {
        io,
        sysctls,
        pcap: a.pcap.clone(),
        fault_out: faults(&a.fault_out)?,
        fault_in: faults(&a.fault_in)?,
        search_path: SearchPath::from_env(&cli.plugin_dir),
    })
}

/// The in-process host a command works on. Built-in plugins fill the names no file took,
/// after the command's own kldload (so `--no-autoload kldload newreno` loads the file).
fn host(cli: &Cli) -> Host {
    let sp = SearchPath::from_env(&cli.plugin_dir);
    if cli.no_autoload {
        let h = Host::empty(sp);
        if !matches!(cli.cmd, Cmd::Kldload { .. }) {
            h.register_builtins();
        }
        return h;
    }
    let (h, errors) = Host::with_plugins(sp);
    for e in errors {
        eprintln!("plugtcp: warning: {e}");
    }
    h
}

/// Where the simulated hosts of a bench look for plugin files: the standard search path,
/// none with `--no-autoload` (the built-ins alone).
fn bench_search_path(cli: &Cli) -> SearchPath {
    if cli.no_autoload {
        SearchPath::default()
    } else {
        SearchPath::from_env(&cli.plugin_dir)
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("plugtcp: {msg}");
    ExitCode::FAILURE
}

/// A benchmark's report as JSON: one line with `--json`, pretty-printed otherwise.
fn print_report(r: &impl serde::Serialize, json: bool) -> ExitCode {
    let out = if json {
        serde_json::to_string(r)
    } else {
        serde_json::to_string_pretty(r)
    };
    println!("{}", out.unwrap_or_default());
    ExitCode::SUCCESS
}

/// Runs a control command on the running host (--control) or on an in-process one.
fn control(cli: &Cli, cmd: ControlCmd) -> ExitCode {
    let reply = match &cli.control {
        Some(path) => match plugtcp_cli::control::request(path, &cmd) {
            Ok(r) => r,
            Err(e) => return fail(format!("control socket: {e}")),
        },
        None if matches!(cmd, ControlCmd::Tcpsso { .. }) => {
            return fail("tcpsso: needs a running host (--control PATH)")
        }
        None if matches!(cmd, ControlCmd::Tcpdrop { .. }) => {
            return fail("tcpdrop: needs a running host (--control PATH)")
        }
        None if matches!(cmd, ControlCmd::Md5key { .. }) => {
            return fail("md5key: needs a running host (--control PATH)")
        }
        None => plugtcp_cli::control::execute(&mut host(cli), &cmd),
    };
    print!("{}", reply.stdout);
    eprint!("{}", reply.stderr);
    if reply.code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `plugtcp packetdrill`'s options: packetdrill's own, then plugtcp's.
#[derive(clap::Args)]
struct PacketdrillArgs {
    /// Scripts to run.
    #[arg(required = true)]
    scripts: Vec<PathBuf>,
    /// ipv4, ipv6 or ipv4-mapped-ipv6 (default: the script's, else ipv4).
    #[arg(long, value_parser = ["ipv4", "ipv6", "ipv4-mapped-ipv6", "ipv4_mapped_ipv6"])]
    ip_version: Option<String>,
    /// Timing tolerance in microseconds (default 4000).
    #[arg(long)]
    tolerance_usecs: Option<u64>,
    /// Timing tolerance as a percentage of the time since the previous event.
    #[arg(long)]
    tolerance_percent: Option<f64>,
    /// Microseconds per TCP timestamp tick; 0 does not check outbound TS val.
    #[arg(long)]
    tcp_ts_tick_usecs: Option<u64>,
    /// The host's address (default 192.168.0.1, or fd3d:fa7b:d17d::1).
    #[arg(long)]
    local_ip: Option<String>,
    /// The script's (the remote peer's) address (default 192.0.2.1, or 2001:db8::1).
    #[arg(long)]
    remote_ip: Option<String>,
    /// The port `bind(..., ...)` and inbound SYNs use (default 8080).
    #[arg(long)]
    bind_port: Option<u16>,
    /// The port `connect(..., ...)` uses (default 8080).
    #[arg(long)]
    connect_port: Option<u16>,
    /// Make packet and/or system call failures warnings: packet, syscall.
    #[arg(long, value_delimiter = ',')]
    non_fatal: Vec<String>,
    /// A name for #ifdef (NAME) or a word to substitute (NAME=VALUE); may be repeated.
    #[arg(long = "define", short = 'D')]
    defines: Vec<String>,
    /// Match each script packet to exactly one packet sent (no merging of consecutive
    /// segments).
    #[arg(long)]
    strict_segments: bool,
    /// Function block to run the scripts against (default: functions_default).
    #[arg(long)]
    stack: Option<String>,
    /// CC module to run the scripts with (default: cc.algorithm).
    #[arg(long)]
    cc: Option<String>,
    /// Print every event with its virtual time.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Write the packets in and out to this pcap file (the last script's, with several).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// One JSON object per script, then the totals.
    #[arg(long)]
    json: bool,
}

fn packetdrill(a: &PacketdrillArgs) -> ExitCode {
    use plugtcp_cli::packetdrill::{run_file, RunOptions, Verdict};
    use plugtcp_packetdrill::IpVersion;
    let opts = RunOptions {
        ip_version: a.ip_version.as_deref().map(|v| match v {
            "ipv6" => IpVersion::Ipv6,
            "ipv4" => IpVersion::Ipv4,
            _ => IpVersion::Ipv4MappedIpv6,
        }),
        tolerance_usecs: a.tolerance_usecs,
        tolerance_percent: a.tolerance_percent,
        tcp_ts_tick_usecs: a.tcp_ts_tick_usecs,
        local_ip: a.local_ip.clone(),
        remote_ip: a.remote_ip.clone(),
        bind_port: a.bind_port,
        connect_port: a.connect_port,
        non_fatal: a.non_fatal.clone(),
        defines: a.defines.clone(),
        strict_segments: a.strict_segments,
        stack: a.stack.clone(),
        cc: a.cc.clone(),
        verbose: a.verbose,
        pcap: a.pcap.clone(),
        seed: 1,
    };
    let many = a.scripts.len() > 1;
    let (mut passed, mut failed) = (0, 0);
    let mut reports = Vec::new();
    for path in &a.scripts {
        let r = run_file(path, &opts);
        if r.verdict.ok() {
            passed += 1;
        } else {
            failed += 1;
        }
        if a.json {
            reports.push(r);
            continue;
        }
        for l in &r.log {
            println!("{l}");
        }
        for w in &r.warnings {
            eprintln!("{w}");
        }
        if let Some(e) = &r.error {
            if r.verdict != Verdict::ExpectedFail || !many {
                eprintln!("{e}");
            }
        }
        if many {
            println!("{:<16} {}", r.verdict.label(), r.path);
        }
    }
    if a.json {
        let out = serde_json::json!({ "scripts": reports, "passed": passed, "failed": failed });
        println!("{out}");
    } else if many {
        println!("{passed} passed, {failed} failed");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.cmd {
        Cmd::Packetdrill(a) => packetdrill(a),
        Cmd::Serve {
            io,
            service,
            port,
            root,
            to,
            stack,
            cc,
            metrics,
            shards,
            transparent,
        } => {
            use plugtcp_cli::serve::{serve, ServeConfig, Service};
            use plugtcp_cli::services::Simple;
            let io = match io_config(&cli, io) {
                Ok(c) => c,
                Err(e) => return fail(format!("serve: {e}")),
            };
            let (service, default_port) = match service {
                ServiceKind::Echo => (Service::Simple(Simple::Echo), 7),
                ServiceKind::Discard => (Service::Simple(Simple::Discard), 9),
                ServiceKind::Chargen => (Service::Simple(Simple::Chargen), 19),
                ServiceKind::Http => match root {
                    Some(r) => (Service::Http { root: r.clone() }, 80),
                    None => return fail("serve: --service http needs --root DIR"),
                },
                ServiceKind::Forward => match to {
                    Some(t) => (Service::Forward { to: Some(*t) }, 8080),
                    None if *transparent => (Service::Forward { to: None }, 8080),
                    None => {
                        return fail(
                            "serve: --service forward needs --to ADDR:PORT (or --transparent)",
                        )
                    }
                },
            };
            let cfg = ServeConfig {
                io,
                service,
                port: port.unwrap_or(default_port),
                stack: stack.clone(),
                cc: cc.clone(),
                control: cli.control.clone(),
                metrics: *metrics,
                shards: *shards,
                transparent: *transparent,
            };
            match serve(&cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("serve: {e}")),
            }
        }
        Cmd::Get { url, io, output } => {
            let io = match io_config(&cli, io) {
                Ok(c) => c,
                Err(e) => return fail(format!("get: {e}")),
            };
            let mut out: Box<dyn std::io::Write> = match output {
                Some(p) => match std::fs::File::create(p) {
                    Ok(f) => Box::new(std::io::BufWriter::new(f)),
                    Err(e) => return fail(format!("get: {}: {e}", p.display())),
                },
                None => Box::new(std::io::stdout().lock()),
            };
            match plugtcp_cli::serve::get(&io, url, &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(format!("get: {e}")),
            }
        }
        Cmd::Plot { trace, output } => match plugtcp_cli::plot::plot_file(trace, output) {
            Ok(s) => {
                let others = if s.other_lines > 0 {
                    format!(" ({} lines of other connections left out)", s.other_lines)
                } else {
                    String::new()
                };
                println!(
                    "{}: {} ACKs of {}{others}, {}x{} PNG",
                    output.display(),
                    s.points,
                    s.flow,
                    s.width,
                    s.height
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("plot: {e}")),
        },
        Cmd::Kldload { what } => control(&cli, ControlCmd::Kldload { what: what.clone() }),
        Cmd::Kldstat { json } => control(&cli, ControlCmd::Kldstat { json: *json }),
        Cmd::Sockstat { json } => control(&cli, ControlCmd::Sockstat { json: *json }),
        Cmd::Md5key { op, peer, key } => {
            use plugtcp_cli::control::Md5Action;
            let action = match (op.as_str(), peer, key) {
                ("add", Some(peer), Some(key)) => {
                    let key = if key == "-" {
                        let mut k = String::new();
                        if let Err(e) = std::io::stdin().read_line(&mut k) {
                            return fail(format!("md5key: standard input: {e}"));
                        }
                        k.trim_end_matches(['\r', '\n']).to_string()
                    } else {
                        key.clone()
                    };
                    Md5Action::Add {
                        peer: peer.clone(),
                        key,
                    }
                }
                ("del", Some(peer), None) => Md5Action::Del { peer: peer.clone() },
                ("list", None, None) => Md5Action::List,
                _ => return fail("md5key: add ADDR[/LEN] KEY | del ADDR[/LEN] | list"),
            };
            control(&cli, ControlCmd::Md5key { action })
        }
        Cmd::Tcpdrop { local, remote } => control(
            &cli,
            ControlCmd::Tcpdrop {
                local: *local,
                remote: *remote,
            },
        ),
        Cmd::Kldunload { name, force } => control(
            &cli,
            ControlCmd::Kldunload {
                name: name.clone(),
                force: *force,
            },
        ),
        Cmd::Sysctl {
            all,
            describe,
            names,
        } => control(
            &cli,
            ControlCmd::Sysctl {
                all: *all,
                describe: *describe,
                names: names.clone(),
            },
        ),
        Cmd::Tcpsso {
            local,
            remote,
            option,
            value,
        } => control(
            &cli,
            ControlCmd::Tcpsso {
                local: *local,
                remote: *remote,
                option: option.clone(),
                value: value.clone(),
            },
        ),
        Cmd::Lab {
            which:
                LabCmd::Run {
                    scenario,
                    out,
                    jobs,
                    kernel,
                    duration,
                    sets,
                    json,
                    metrics,
                    hold,
                },
        } => {
            use plugtcp_cli::lab::driver;
            if let Some(addr) = metrics {
                match plugtcp_io::exporter::install(*addr) {
                    Ok((a, _)) => eprintln!("plugtcp: metrics at http://{a}/metrics"),
                    Err(e) => return fail(format!("lab: --metrics {e}")),
                }
            }
            let file = match plugtcp_cli::lab::scenario::load_with(scenario, sets) {
                Ok(f) => f,
                Err(e) => return fail(e),
            };
            let out = out.clone().unwrap_or_else(|| {
                PathBuf::from("lab-results").join(plugtcp_cli::lab::output::slug(&file.name))
            });
            let opts = driver::LabOptions {
                scenario: scenario.clone(),
                out: Some(out.clone()),
                jobs: *jobs,
                kernel: *kernel,
                duration: *duration,
                search_path: SearchPath::from_env(&cli.plugin_dir),
                metrics: metrics.is_some(),
                sets: sets.clone(),
            };
            let code = match driver::run_file(file, &opts) {
                Ok(r) => {
                    if *json {
                        println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    } else {
                        print!("{}", driver::render_table(&r));
                        println!("results: {}", out.join("report.html").display());
                    }
                    let mut broken = false;
                    for run in &r.runs {
                        for v in driver::invariant_violations(run) {
                            broken = true;
                            eprintln!(
                                "lab: {} seed {} ({}): {v}",
                                run.point,
                                run.seed,
                                run.engine.name()
                            );
                        }
                    }
                    if broken {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => fail(format!("lab: {e}")),
            };
            if metrics.is_some() && *hold > 0 {
                eprintln!("plugtcp: serving the final metrics for {hold} s");
                std::thread::sleep(std::time::Duration::from_secs(*hold));
            }
            code
        }
        Cmd::Demo {
            json,
            size,
            bandwidth,
            rtt_ms,
            loss,
            queue_bdp,
            seed,
            stack,
            cc,
            pcap,
            trace,
            metrics,
            hold,
        } => {
            if let Some(addr) = metrics {
                match plugtcp_io::exporter::install(*addr) {
                    Ok((a, _)) => eprintln!("plugtcp: metrics at http://{a}/metrics"),
                    Err(e) => return fail(format!("demo: --metrics {e}")),
                }
            }
            let opts = plugtcp_cli::demo::DemoOptions {
                bytes: *size,
                bandwidth_bps: *bandwidth,
                rtt_ns: (rtt_ms * 1e6) as u64,
                loss: *loss,
                queue_bdp: *queue_bdp,
                seed: *seed,
                stack: stack.clone(),
                cc: cc.clone(),
                pcap: pcap.clone(),
                trace: trace.clone(),
                publish_every: metrics.map(|_| std::time::Duration::from_secs(1)),
                ..Default::default()
            };
            let code = match plugtcp_cli::demo::run(&opts, SearchPath::from_env(&cli.plugin_dir)) {
                Ok(r) => {
                    if *json {
                        println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    } else {
                        print!("{}", r.render());
                    }
                    if r.intact {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => fail(format!("demo: {e}")),
            };
            if metrics.is_some() && *hold > 0 {
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                eprintln!("plugtcp: serving the final metrics for {hold} s");
                std::thread::sleep(std::time::Duration::from_secs(*hold));
            }
            code
        }
        Cmd::Bench {
            which:
                Bench::Tun {
                    bytes,
                    rounds,
                    connections,
                    shards,
                    json,
                },
        } => {
            let mut cfg = plugtcp_cli::bench::tun::TunConfig {
                bytes: *bytes,
                rounds: *rounds,
                ..Default::default()
            };
            if !connections.is_empty() {
                cfg.connections = connections.clone();
            }
            if !shards.is_empty() {
                cfg.shards = shards.clone();
            }
            match plugtcp_cli::bench::tun::run(&cfg) {
                Ok(r) if *json => print_report(&r, true),
                Ok(r) => {
                    print!("{}", r.text());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("bench tun: {e}")),
            }
        }
        Cmd::Bench {
            which:
                Bench::Echo {
                    clients,
                    round_trips,
                    size,
                    json,
                },
        } => {
            let cfg = plugtcp_cli::bench::echo::EchoConfig {
                clients: *clients,
                round_trips: *round_trips,
                size: *size,
                ..Default::default()
            };
            match plugtcp_cli::bench::echo::run(&cfg) {
                Ok(r) if *json => print_report(&r, true),
                Ok(r) => {
                    print!("{}", r.text());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("bench echo: {e}")),
            }
        }
        Cmd::Bench {
            which:
                Bench::Shards {
                    seconds,
                    connections,
                    in_flight,
                    rounds,
                    json,
                },
        } => {
            let cfg = plugtcp_cli::bench::shards::ShardsConfig {
                seconds: *seconds,
                bulk_connections: *connections,
                handshakes_in_flight: *in_flight,
                rounds: *rounds,
            };
            match plugtcp_cli::bench::shards::run(&cfg) {
                Ok(r) if *json => print_report(&r, true),
                Ok(r) => {
                    print!("{}", r.text());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("bench shards: {e}")),
            }
        }
        Cmd::Bench {
            which:
                Bench::Conns {
                    connections,
                    bulk,
                    json,
                },
        } => match plugtcp_cli::bench::conns::run(*connections, *bulk) {
            Ok(r) => print_report(&r, *json),
            Err(e) => fail(format!("bench conns: {e}")),
        },
        Cmd::Bench {
            which:
                Bench::Bulk {
                    bytes,
                    json,
                    no_smoltcp,
                    mtu,
                    buffer,
                },
        } => {
            let exe_dir = std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.to_path_buf()));
            let dir = if *no_smoltcp {
                None
            } else {
                exe_dir.as_deref()
            };
            let mtus = mtu.map_or(vec![1500, 65535], |m| vec![m]);
            let buffers = buffer.map_or(vec![64 * 1024, 4 << 20], |b| vec![b]);
            match plugtcp_cli::bench::bulk::run(*bytes, &mtus, &buffers, dir) {
                Ok(cases) => {
                    if *json {
                        println!("{}", serde_json::to_string(&cases).unwrap_or_default());
                    } else {
                        println!(
                            "{:>6} {:>9} {:>9} {:>14} {:>14} {:>7}",
                            "MTU", "buffer", "checksums", "plugtcp Gb/s", "smoltcp Gb/s", "ratio"
                        );
                        for c in &cases {
                            let sm = c
                                .smoltcp
                                .as_ref()
                                .map_or("-".to_string(), |s| format!("{:.2}", s.gbit_per_s));
                            let r = c.ratio.map_or("-".to_string(), |r| format!("{r:.2}x"));
                            let sums = if c.checksum_offload {
                                "offload"
                            } else {
                                "computed"
                            };
                            println!(
                                "{:>6} {:>9} {:>9} {:>14.2} {:>14} {:>7}",
                                c.mtu, c.buffer, sums, c.plugtcp.gbit_per_s, sm, r
                            );
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("bench bulk: {e}")),
            }
        }
        Cmd::Bench {
            which:
                Bench::Cc {
                    ccs,
                    seconds,
                    seed,
                    warmup,
                    queue_bdp,
                    sysctls,
                    json,
                },
        } => {
            let ccs: Vec<String> = if ccs.is_empty() {
                plugtcp_cli::ccsim::FREEBSD_MODULES
                    .iter()
                    .chain(&["bbr"])
                    .map(|s| s.to_string())
                    .collect()
            } else {
                ccs.clone()
            };
            let mut results = Vec::new();
            if !*json {
                println!("{}", plugtcp_cli::ccsim::CcResult::HEADER);
            }
            for cc in &ccs {
                for flows in [1, 2] {
                    let mut exp = plugtcp_cli::ccsim::CcExperiment::standard(cc, flows);
                    exp.search_path = bench_search_path(&cli);
                    exp.measure_ns = seconds * 1_000_000_000;
                    exp.warmup_ns = warmup * 1_000_000_000;
                    exp.queue_bdp = *queue_bdp;
                    exp.seed = *seed;
                    for kv in sysctls {
                        match kv.split_once('=') {
                            Some((k, v)) => exp.sysctls.push((k.to_string(), v.to_string())),
                            None => {
                                return fail(format!(
                                    "bench cc: --sysctl {kv}: expected NAME=VALUE"
                                ))
                            }
                        }
                    }
                    if cc == "dctcp" {
                        exp = exp.with_ecn_marking();
                    }
                    match plugtcp_cli::ccsim::run(&exp) {
                        Ok(r) => {
                            if !*json {
                                println!("{}", r.row());
                            }
                            results.push(r);
                        }
                        Err(e) => return fail(format!("bench cc: {cc}: {e}")),
                    }
                }
            }
            // The rate-based table: bbr (module on base and rack, and the bbr block) next
            // to the loss-based modules asked for.
            let mut rate_rows = Vec::new();
            let rows = plugtcp_cli::ccsim::RATE_ROWS
                .iter()
                .filter(|(name, cc, _)| {
                    // "bbr" asks for the module's rows and the bbr block's.
                    ccs.iter()
                        .any(|c| c == cc || name.split(' ').next() == Some(c.as_str()))
                });
            let mut base = plugtcp_cli::ccsim::CcExperiment::standard("newreno", 1);
            base.search_path = bench_search_path(&cli);
            base.measure_ns = seconds * 1_000_000_000;
            base.warmup_ns = warmup * 1_000_000_000;
            base.seed = *seed;
            for kv in sysctls {
                if let Some((k, v)) = kv.split_once('=') {
                    base.sysctls.push((k.to_string(), v.to_string()));
                }
            }
            for (i, (name, cc, stack)) in rows.enumerate() {
                if i == 0 && !*json {
                    println!("\n{}", plugtcp_cli::ccsim::RateRow::HEADER);
                }
                match plugtcp_cli::ccsim::rate_row(name, cc, stack, &base) {
                    Ok(r) => {
                        if !*json {
                            println!("{}", r.row());
                        }
                        rate_rows.push(r);
                    }
                    Err(e) => return fail(format!("bench cc: {name} on {stack}: {e}")),
                }
            }
            if *json {
                println!(
                    "{}",
                    serde_json::json!({ "cc": results, "rate": rate_rows })
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::Bench {
            which: Bench::CcSwitch { switches, json },
        } => match plugtcp_cli::bench::cc_switch::run(*switches) {
            Ok(r) => print_report(&r, *json),
            Err(e) => fail(format!("bench cc-switch: {e}")),
        },
        Cmd::Bench {
            which:
                Bench::StackSwitch {
                    blocks,
                    switches,
                    bytes,
                    json,
                },
        } => {
            let names: Vec<&str> = blocks.split(',').map(str::trim).collect();
            let [a, b] = names[..] else {
                return fail(format!(
                    "bench stack-switch: --blocks takes two names, A,B (got `{blocks}`)"
                ));
            };
            let cfg = plugtcp_cli::bench::stack_switch::StackSwitchConfig {
                blocks: [a.to_string(), b.to_string()],
                switches: (*switches).max(1),
                bytes: *bytes,
                ..Default::default()
            };
            let sp = SearchPath::from_env(&cli.plugin_dir);
            match plugtcp_cli::bench::stack_switch::run(&cfg, &sp, &[]) {
                Ok(r) if r.intact => print_report(&r, *json),
                Ok(r) => {
                    print_report(&r, *json);
                    fail("bench stack-switch: the bytes after the switches do not match")
                }
                Err(e) => fail(format!("bench stack-switch: {e}")),
            }
        }
        Cmd::Bench {
            which:
                Bench::Metrics {
                    bytes,
                    samples,
                    mtu,
                    buffer,
                    publish_ms,
                    scrape_ms,
                    json,
                },
        } => {
            use plugtcp_cli::bench::metrics::{run, MetricsBenchConfig};
            use std::time::Duration;
            let cfg = MetricsBenchConfig {
                bytes: *bytes,
                samples: *samples,
                mtu: *mtu,
                buffer: *buffer,
                publish: Duration::from_millis(*publish_ms),
                scrape: Duration::from_millis(*scrape_ms),
            };
            match run(&cfg) {
                Ok(r) if *json => print_report(&r, true),
                Ok(r) => {
                    for s in &r.samples {
                        println!(
                            "metrics {:<3} {:>8.2} Gbit/s  {:>3} publishes  {:>2} renders",
                            if s.metrics { "on" } else { "off" },
                            s.gbit_per_s,
                            s.publishes,
                            s.renders
                        );
                    }
                    let (pct, word) = if r.slowdown_percent >= 0.0 {
                        (r.slowdown_percent, "slower")
                    } else {
                        (-r.slowdown_percent, "faster")
                    };
                    println!(
                        "median: off {:.2} Gbit/s, on {:.2} Gbit/s, on/off {:.3} ({pct:.1}% {word} with metrics on)",
                        r.gbit_per_s_off, r.gbit_per_s_on, r.ratio
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("bench metrics: {e}")),
            }
        }
        Cmd::Bench {
            which:
                Bench::Dispatch {
                    calls,
                    samples,
                    json,
                },
        } => {
            let sp = SearchPath::from_env(&cli.plugin_dir);
            match plugtcp_cli::bench::dispatch::run(&sp, *calls, *samples) {
                Ok(r) => print_report(&r, *json),
                Err(e) => fail(format!("bench dispatch: {e}")),
            }
        }
    }
}
