//! Parses packetdrill scripts and prints them back in canonical notation, or prints the
//! packetdrill-style error. Usage: `cargo run -p plugtcp-packetdrill --example
//! print_script -- FILE.pkt... [-D NAME[=VALUE]]...`

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut files = Vec::new();
    let mut defines = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-D" => defines.extend(args.next()),
            _ => files.push(arg),
        }
    }
    let mut status = ExitCode::SUCCESS;
    for path in files {
        let result = std::fs::read_to_string(&path)
            .map_err(|e| format!("{path}: {e}"))
            .and_then(|text| {
                plugtcp_packetdrill::parse_script(&path, &text, &defines).map_err(|e| e.to_string())
            });
        match result {
            Ok(script) => print!("{script}"),
            Err(message) => {
                eprintln!("{message}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
