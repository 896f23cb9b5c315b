//! The bindings `wit-bindgen` generates from `sdk/wit/weir.wit`, compiled
//! for Wasm only. The one home of generated code: plugins use the SDK's own
//! types, the seam (`backend`) calls the host's imports,
//! and [`export!`](crate::export!) wires a plugin to the `guest` export
//! through this module. Not part of the API.

wit_bindgen::generate!({
    world: "plugin",
    path: "wit",
    pub_export_macro: true,
    export_macro_name: "__export_plugin",
    default_bindings_module: "weir_sdk::bindings",
});
