//! The packetdrill script parser on arbitrary text: errors name a line, nothing panics,
//! and what parses prints back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(script) = plugtcp_packetdrill::parse_script("fuzz.pkt", text, &[]) {
        let _ = script.config();
        let _ = format!("{script:?}");
    }
});
