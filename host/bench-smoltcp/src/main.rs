//! `plugtcp-smoltcp-bulk --bytes N --mtu M --buffer B [--cc none|reno|cubic] [--checksum-offload] [--json] [--verbose]`

use std::process::ExitCode;

use plugtcp_smoltcp_bulk::{BulkConfig, BulkReport, Cc, run};

const USAGE: &str = "usage: plugtcp-smoltcp-bulk --bytes N --mtu M --buffer B [--cc none|reno|cubic] [--checksum-offload] [--json] [--verbose]";

struct Args {
    cfg: BulkConfig,
    json: bool,
    /// Also print loop iterations and synthetic time to stderr.
    verbose: bool,
}

fn parse_num<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value:?}"))
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut bytes, mut mtu, mut buffer) = (None, None, None);
    let mut cc = Cc::None;
    let mut json = false;
    let mut verbose = false;
    let mut checksum_offload = false;
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        let mut value = || inline.clone().or_else(|| it.next());
        match flag.as_str() {
            "--bytes" => bytes = Some(parse_num::<u64>("--bytes", value())?),
            "--mtu" => mtu = Some(parse_num::<usize>("--mtu", value())?),
            "--buffer" => buffer = Some(parse_num::<usize>("--buffer", value())?),
            "--cc" => {
                let v = value().ok_or("--cc needs a value")?;
                cc = Cc::parse(&v).ok_or_else(|| format!("--cc: unknown algorithm {v:?}"))?;
            }
            "--json" if inline.is_none() => json = true,
            "--checksum-offload" if inline.is_none() => checksum_offload = true,
            "--verbose" if inline.is_none() => verbose = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let missing = |name: &str| format!("{name} is required");
    let mut cfg = BulkConfig::new(
        bytes.ok_or_else(|| missing("--bytes"))?,
        mtu.ok_or_else(|| missing("--mtu"))?,
        buffer.ok_or_else(|| missing("--buffer"))?,
    );
    cfg.cc = cc;
    cfg.checksum_offload = checksum_offload;
    Ok(Args { cfg, json, verbose })
}

fn render(cfg: &BulkConfig, r: &BulkReport, json: bool) -> String {
    if json {
        // Hand-written: only integers, finite floats and fixed ASCII strings.
        format!(
            "{{\"stack\":\"smoltcp\",\"version\":\"0.14\",\"bytes\":{},\"mtu\":{},\"buffer\":{},\"seconds\":{},\"gbit_per_s\":{},\"cc\":\"{}\"}}",
            r.bytes,
            cfg.mtu,
            cfg.buffer,
            r.seconds,
            r.gbit_per_s(),
            cfg.cc.name()
        )
    } else {
        format!(
            "smoltcp 0.14: {} bytes, MTU {}, buffer {}: {:.2} Gbit/s ({:.3} s)",
            r.bytes,
            cfg.mtu,
            cfg.buffer,
            r.gbit_per_s(),
            r.seconds
        )
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("plugtcp-smoltcp-bulk: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args.cfg) {
        Ok(report) => {
            println!("{}", render(&args.cfg, &report, args.json));
            if args.verbose {
                eprintln!(
                    "cc {}, {} loop iterations, {} synthetic time, {} packets A->B, {} packets B->A",
                    args.cfg.cc.name(),
                    report.iterations,
                    report.synthetic,
                    report.packets.0,
                    report.packets.1
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plugtcp-smoltcp-bulk: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_flags() {
        let a = args("--bytes 100 --mtu=1500 --buffer 65536 --json --cc cubic").unwrap();
        assert_eq!(
            (a.cfg.bytes, a.cfg.mtu, a.cfg.buffer, a.cfg.cc, a.json),
            (100, 1500, 65536, Cc::Cubic, true)
        );
        let a = args("--buffer 1 --bytes 5 --mtu 9000").unwrap();
        assert_eq!((a.cfg.cc, a.json), (Cc::None, false));
    }

    #[test]
    fn rejects_bad_flags() {
        for bad in [
            "--bytes 1 --mtu 1500",
            "--bytes x --mtu 1500 --buffer 1",
            "--bytes 1 --mtu 1500 --buffer",
            "--bytes 1 --mtu 1500 --buffer 1 --cc vegas",
            "--bytes 1 --mtu 1500 --buffer 1 --fast",
            "--bytes -1 --mtu 1500 --buffer 1",
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_output_is_one_object() {
        let cfg = BulkConfig::new(1 << 20, 1500, 65536);
        let r = run(&cfg).unwrap();
        let line = render(&cfg, &r, true);
        assert!(line.starts_with("{\"stack\":\"smoltcp\",\"version\":\"0.14\",\"bytes\":1048576,\"mtu\":1500,\"buffer\":65536,\"seconds\":"));
        assert!(line.ends_with(",\"cc\":\"none\"}"));
        assert!(!line.contains("NaN") && !line.contains("inf"));
        let human = render(&cfg, &r, false);
        assert!(human.starts_with("smoltcp 0.14: 1048576 bytes, MTU 1500, buffer 65536: "));
        assert!(human.ends_with(" s)"));
    }
}
