//! Control-socket requests: arbitrary bytes as the JSON a client sends, and every command
//! that parses run on a host with a connection (kldload, which opens files, excepted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use plugtcp_host::kld::StaticPlugins;
use plugtcp_host::registry::loader::SearchPath;
use plugtcp_host::Host;
use plugtcp_io::control::{execute, ControlCmd};

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = serde_json::from_slice::<ControlCmd>(data) else {
        return;
    };
    if matches!(cmd, ControlCmd::Kldload { .. }) {
        return;
    }
    let mut host = Host::with_seed(SearchPath::default(), 1);
    host.register_static(&StaticPlugins {
        function_blocks: vec![plugtcp_stack_base::function_block()],
        cc_modules: vec![plugtcp_cc_newreno::cc_algo(), plugtcp_cc_cubic::cc_algo()],
    });
    host.add_addr("10.0.0.1".parse().unwrap());
    let _ = host.listen("10.0.0.1:80".parse().unwrap(), 4);
    let _ = host.connect("10.0.0.2:80".parse().unwrap(), None);
    let _ = execute(&mut host, &cmd);
});
