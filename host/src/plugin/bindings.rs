//! The plugin contract as the host sees it: `bindgen!` over
//! `sdk/wit/weir.wit` (the only generated code, quarantined here), the
//! contract's names and version, and the types its two resources are bound
//! to. Everything else in `plugin` builds on this module and it imports
//! none of them: the host functions (`host`, `hot`) implement the generated
//! traits, and the rest of the crate uses our own types.

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "plugin",
    with: {
        "weir:plugin/http.request": RequestHandle,
        "weir:plugin/http.response": ResponseHandle,
        "weir:plugin/http.fields": FieldsHandle,
    },
    // Resource drops go through the store; everything else answers with
    // values (errors are strings in the contract), never traps.
    imports: { default: trappable },
});

pub use weir::plugin::calls::{CallResponse, CallResult};
pub use weir::plugin::fleet::FleetResult;
pub use weir::plugin::types::{
    Action, BodyAction, BucketOutcome, Capabilities, LogLevel, ResponseAction,
};

/// The version of `sdk/wit/weir.wit` this gateway speaks, spelled once:
/// the names below are built from it.
macro_rules! contract_version {
    (minor) => {
        "0.9."
    };
    () => {
        concat!(contract_version!(minor), "0")
    };
}

/// The contract this gateway speaks; a plugin must import and export
/// `weir:plugin/*` at a semver-compatible version (0.9.x).
pub const CONTRACT: &str = concat!("weir:plugin@", contract_version!());
/// The contract's `http` interface, as components import it.
pub const HTTP_INTERFACE: &str = concat!("weir:plugin/http@", contract_version!());
pub(super) const CONTRACT_COMPATIBLE: &str = contract_version!(minor);

/// The `request` resource. An instance gets one handle in `init` and keeps
/// it; the handle names the head lent to the store for the current call
/// (an empty placeholder between calls).
pub struct RequestHandle;
/// The `response` resource, likewise.
pub struct ResponseHandle;
/// The `fields` resource: an instance gets one for the request's headers
/// and one for the response's, told apart by their representation.
pub struct FieldsHandle;

/// The resource representations of the two handles every instance gets
/// in `init`: fixed, since a store lends one request and one response.
pub(crate) const REQUEST_REP: u32 = 0;
pub(crate) const RESPONSE_REP: u32 = 1;
pub(crate) const REQUEST_FIELDS_REP: u32 = 2;
pub(crate) const RESPONSE_FIELDS_REP: u32 = 3;
