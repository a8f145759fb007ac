//! Test fixture: what a plugin compiled against framework ABI 0.0.x looks like. Its root
//! module has the same name but an older ABI version (and an older, shorter layout), so the
//! host must refuse it with a message naming the version mismatch.

use abi_stable::{
    export_root_module, library::RootModule, prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings, std_types::RStr, StableAbi,
};

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
pub struct PluginModule {
    #[sabi(last_prefix_field)]
    pub name: RStr<'static>,
}

impl RootModule for PluginModuleRef {
    abi_stable::declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "plugtcp_plugin";
    const NAME: &'static str = "plugtcp plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("0.0.7");
}

#[export_root_module]
pub fn root() -> PluginModuleRef {
    PluginModule {
        name: RStr::from_str("oldabi"),
    }
    .leak_into_prefix()
}
