//! The generated side of the plugin contract, quarantined: `bindgen!` over
//! `sdk/wit/weir.wit` lives here and nowhere else. The rest of the crate
//! uses our own types and reaches the generated ones only through the
//! conversions in `plugin::call` and the host traits in `plugin::host`.

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "plugin",
    with: {
        "weir:plugin/http.request": crate::plugin::host::RequestHandle,
        "weir:plugin/http.response": crate::plugin::host::ResponseHandle,
    },
    // Resource drops go through the store; everything else answers with
    // values (errors are strings in the contract), never traps.
    imports: { default: trappable },
});

pub use weir::plugin::types::{Action, BodyAction, BucketOutcome, Capabilities, LogLevel};
