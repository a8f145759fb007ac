//! The plugins the `plugtcp` binary links in: every stack and CC module of this workspace,
//! registered through the same ABI as a file would be. Each plugin crate also exports
//! abi_stable's root-module symbol under its fixed name, so a program that links several of
//! them needs the linker flag this crate's build script passes; the host library does not.

use plugtcp_host::kld::StaticPlugins;
use plugtcp_host::registry::loader::{LoadError, SearchPath};
use plugtcp_host::Host;
use plugtcp_io::sim::SimLinkConfig;
use plugtcp_io::simnet::SimNet;

/// The built-in bundle: the base, rack and bbr blocks and the nine CC modules.
pub fn plugins() -> StaticPlugins {
    StaticPlugins {
        function_blocks: vec![
            plugtcp_stack_base::function_block(),
            plugtcp_stack_rack::function_block(),
            plugtcp_stack_bbr::function_block(),
        ],
        cc_modules: vec![
            plugtcp_cc_newreno::cc_algo(),
            plugtcp_cc_cubic::cc_algo(),
            plugtcp_cc_htcp::cc_algo(),
            plugtcp_cc_vegas::cc_algo(),
            plugtcp_cc_dctcp::cc_algo(),
            plugtcp_cc_cdg::cc_algo(),
            plugtcp_cc_chd::cc_algo(),
            plugtcp_cc_hd::cc_algo(),
            plugtcp_cc_bbr::cc_algo(),
        ],
    }
}

/// A host with the built-in bundle.
pub trait BuiltinHost: Sized {
    /// Registers the built-ins whose names are still free.
    fn register_builtins(&self);
    /// A real host (secrets from the OS) that loads every plugin file on `search_path`, then
    /// the built-ins whose names no file took. Files that fail are reported, not fatal.
    fn with_plugins(search_path: SearchPath) -> (Self, Vec<LoadError>);
}

impl BuiltinHost for Host {
    fn register_builtins(&self) {
        self.register_static(&plugins());
    }

    fn with_plugins(search_path: SearchPath) -> (Self, Vec<LoadError>) {
        Host::empty(search_path).autoload(&plugins())
    }
}

/// Two simulated hosts with the built-in bundle.
pub trait BuiltinNet {
    /// Both hosts with only the built-ins (deterministic tests), seeded from `seed`.
    fn builtin(cfg: SimLinkConfig, seed: u64) -> SimNet;
    /// Both hosts with the plugin files on `search_path`, then the built-ins.
    fn with_plugins(cfg: SimLinkConfig, seed: u64, search_path: SearchPath) -> SimNet;
}

impl BuiltinNet for SimNet {
    fn builtin(cfg: SimLinkConfig, seed: u64) -> SimNet {
        SimNet::new(cfg, seed, SearchPath::default(), &plugins())
    }

    fn with_plugins(cfg: SimLinkConfig, seed: u64, search_path: SearchPath) -> SimNet {
        SimNet::new(cfg, seed, search_path, &plugins())
    }
}
