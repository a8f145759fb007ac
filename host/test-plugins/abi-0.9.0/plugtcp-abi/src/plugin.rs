//! The root module every plugin library exports, and the ABI version checked at load.

use abi_stable::{
    library::RootModule, package_version_strings, sabi_types::VersionStrings, std_types::RStr,
    StableAbi,
};

use crate::cc::CcAlgoRef;
use crate::stack::TcpFunctionBlockRef;

/// The ABI version of this framework. The host refuses a plugin whose version has another
/// major number, or (while the major is 0) a different minor. Bump the minor on any change
/// to a type that crosses the boundary other than appending to a prefix type.
pub const ABI_VERSION: &str = "0.9.0";

/// What a plugin library provides: one function block or one CC module.
#[repr(u8)]
#[derive(Copy, Clone, PartialEq, Eq, Debug, StableAbi)]
pub enum PluginKind {
    /// A TCP function block (whole stack).
    FunctionBlock = 0,
    /// A congestion control module.
    CcModule = 1,
}

impl PluginKind {
    /// The kind as kldstat shows it: `"stack"` or `"cc"`.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::FunctionBlock => "stack",
            PluginKind::CcModule => "cc",
        }
    }
}

/// The root module of a plugin library.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(option))]
pub struct PluginModule {
    /// Which of `function_block` and `cc_algo` the library provides; the host looks only at
    /// that one (a library of the other kind without it is "not a plugin").
    pub kind: PluginKind,
    /// The plugin's own version (its crate version), shown by kldstat.
    pub version: RStr<'static>,
    /// Returns the function block descriptor (kind `FunctionBlock`).
    pub function_block: Option<extern "C" fn() -> TcpFunctionBlockRef>,
    /// Returns the CC module descriptor (kind `CcModule`).
    #[sabi(last_prefix_field)]
    pub cc_algo: Option<extern "C" fn() -> CcAlgoRef>,
}

impl RootModule for PluginModuleRef {
    abi_stable::declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "plugtcp_plugin";
    const NAME: &'static str = "plugtcp plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION);
}

/// The framework crate's own version, for messages.
pub const FRAMEWORK_VERSION: VersionStrings = package_version_strings!();
