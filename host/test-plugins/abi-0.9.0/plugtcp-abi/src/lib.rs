#![deny(missing_docs)]

//! plugtcp-abi: the contract the plugtcp host and every plugin compile against, and all of
//! it that [`ABI_VERSION`] guards. A plugin author reads this crate (and a template); the
//! building blocks that make writing a stack or a CC module short are in `plugtcp-tcpkit`.
//!
//! - [`plugin`]: the root module a plugin library exports and the ABI version.
//! - [`stack`]: TCP function blocks (`struct tcp_function_block`) and the host interface.
//! - [`cc`]: congestion control modules (`struct cc_algo`, `struct cc_var`).
//! - [`tcpcb`]: the shared control block; [`segment`]: segment descriptors;
//!   [`sockopt`]: socket options; [`errno`]: errors; [`seq`]: sequence arithmetic.

pub mod cc;
pub mod errno;
pub mod plugin;
pub mod segment;
pub mod seq;
pub mod sockopt;
pub mod stack;
pub mod tcpcb;

pub use abi_stable;
pub use errno::{Errno, HookError, HookStatus};
pub use plugin::{PluginKind, PluginModule, PluginModuleRef, ABI_VERSION};
pub use tcpcb::{TcpState, Tcpcb};

/// Exports a congestion control module: `export_cc_module!(MyAlgo);` in the plugin crate's
/// lib.rs, where `MyAlgo: plugtcp_abi::cc::CcAlgorithm`. The crate must be
/// `crate-type = ["cdylib", "rlib"]` and depend on `abi_stable`.
///
/// It defines `pub fn cc_algo()` and `pub fn plugin_module()` (for static registration) and
/// the library's root module. The root-module symbol has a fixed name, so a binary that
/// links several plugins statically must let the linker keep one definition (the `plugtcp`
/// binary's build script, host/cli/build.rs, does: `-Wl,--allow-multiple-definition`); only
/// `.so` files are ever asked for it.
#[macro_export]
macro_rules! export_cc_module {
    ($algo:ty) => {
        /// This module's ABI descriptor, for static registration in a host.
        pub fn cc_algo() -> $crate::cc::CcAlgoRef {
            <$crate::cc::CcVtable<$algo>>::ALGO
        }

        extern "C" fn __plugtcp_cc_algo() -> $crate::cc::CcAlgoRef {
            cc_algo()
        }

        $crate::__plugtcp_root_module!(CcModule, None, Some(__plugtcp_cc_algo));
    };
}

/// Exports a TCP function block: `export_function_block!(MyStack);` where
/// `MyStack: plugtcp_abi::stack::TcpStack`. See [`export_cc_module!`].
#[macro_export]
macro_rules! export_function_block {
    ($stack:ty) => {
        /// This stack's ABI descriptor, for static registration in a host.
        pub fn function_block() -> $crate::stack::TcpFunctionBlockRef {
            <$crate::stack::StackVtable<$stack>>::BLOCK
        }

        extern "C" fn __plugtcp_function_block() -> $crate::stack::TcpFunctionBlockRef {
            function_block()
        }

        $crate::__plugtcp_root_module!(FunctionBlock, Some(__plugtcp_function_block), None);
    };
}

/// The root module and its export, shared by the two export macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __plugtcp_root_module {
    ($kind:ident, $function_block:expr, $cc_algo:expr) => {
        /// The plugin root module (what the shared library exports).
        pub fn plugin_module() -> $crate::PluginModuleRef {
            use $crate::abi_stable::prefix_type::WithMetadata;
            const ROOT: &WithMetadata<$crate::PluginModule> =
                &WithMetadata::new($crate::PluginModule {
                    kind: $crate::PluginKind::$kind,
                    version: $crate::abi_stable::std_types::RStr::from_str(env!(
                        "CARGO_PKG_VERSION"
                    )),
                    function_block: $function_block,
                    cc_algo: $cc_algo,
                });
            $crate::PluginModuleRef(ROOT.static_as_prefix())
        }

        #[doc(hidden)]
        pub mod __plugtcp_export {
            #[::abi_stable::export_root_module]
            pub fn __plugtcp_root() -> $crate::PluginModuleRef {
                super::plugin_module()
            }
        }
    };
}
