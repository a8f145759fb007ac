//! Sysctl writes with arbitrary values (and names) on a host: the value is taken or
//! refused with an errno, the host's tunables are refreshed, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::sysctl::TUNABLES;
use plugtcp_host::Host;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut host = Host::with_seed(SearchPath::default(), 1);
    // Most inputs name a tunable by index; some give the whole NAME=VALUE.
    let (name, value) = match text.split_once('=') {
        Some((n, v)) if pick & 1 == 1 => (n.to_string(), v.to_string()),
        _ => (
            TUNABLES[usize::from(pick) % TUNABLES.len()]
                .name
                .to_string(),
            text.to_string(),
        ),
    };
    let _ = host.sysctl_set(&name, &value);
    let _ = host.sysctl.get(&name);
    let _ = host.sysctl.describe(&name);
});
