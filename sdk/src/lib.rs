//! The Weir plugin SDK: write a gateway plugin as a plain Rust type.
//!
//! A plugin is a type that implements [`Plugin`]; [`export!`] turns it into
//! the `guest` interface of the `weir:plugin@0.9.0` WebAssembly component
//! (the contract in `sdk/wit/weir.wit`). The SDK owns the translation between
//! that contract and ordinary Rust types: [`Request`] and [`Response`] wrap
//! the host's resources, [`Action`], [`BodyAction`] and [`ResponseAction`]
//! are what the phases answer, [`calls`] starts HTTP calls to the gateway's
//! upstreams and reads their results, [`fleet`] keeps counters and token
//! buckets that every gateway of a fleet shares, and the modules
//! [`context`], [`state`], [`log`], [`metrics`], [`time`] and [`random`]
//! are the host's services. It does not own anything the gateway decides:
//! limits, failure policy, instance pooling, sending calls, where fleet
//! values live and the order of plugins in a chain are the host's.
//!
//! # Lifecycle
//!
//! ```text
//!   instance created ──► Plugin::new(config)          once; Err rejects the deployment
//!                              │
//!          ┌───────────────────┘   then for every request the instance serves:
//!          ▼
//!    on_request ──► Action::Wait ──► on_request_calls ⟲ Wait
//!          │◄───────────────────────────────┘   (the results of the calls and fleet
//!          │                                        operations it waited for)
//!          │  Action::Respond ────────────────────────────────────────────┐
//!          │  Action::Continue / Action::route_to(..)                     │
//!          ▼                                                              │
//!    [on_request_body] ──► BodyAction::Respond ───────────────────────────┤
//!          │                                                              │
//!          ▼                                                              │
//!      (upstream)                                                         │
//!          │                                                              │
//!          ▼                                                              │
//!    on_response ──► ResponseAction::Wait ──► on_response_calls ⟲ Wait    │
//!          │◄────────────────────────────────────────┘                    │
//!          ▼                                                              │
//!    [on_response_body] ──► response sent ◄───────────────────────────────┘
//!                                 │
//!                                 ▼
//!                         on_background_calls       off the critical path; only with
//!                                 │                 results of calls or fleet operations
//!                                 │                 not waited for
//!                                 ▼
//!                              on_log
//! ```
//!
//! A phase runs only when [`Plugin::phases`] names it. Unless a plugin says
//! otherwise that is `on_request`, `on_response` and `on_log`
//! ([`Phases::DEFAULT`]); each one left out saves the gateway a call into
//! Wasm per request, and the body phases, in brackets, which hand over a
//! buffered body, run only when asked for.
//! A short-circuit answer (`Respond`) skips the upstream and this plugin's
//! response phases; `on_log` still runs.
//!
//! The phases that get the results of [`calls`] and of the [`fleet`]
//! operations that wait run whenever there are results, whatever
//! [`Plugin::phases`] says: `on_request_calls` and `on_response_calls`
//! after their phase answered `Wait` (the request waits for what that
//! phase started, holding no instance, and the phase may wait again), and
//! `on_background_calls` after the response was sent, with the results of
//! what a phase that did not wait started.
//!
//! # Example
//!
//! ```
//! use weir_sdk::{Action, Plugin, Request};
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     header: String,
//! }
//!
//! /// Refuses requests that lack a configured header.
//! struct RequireHeader {
//!     header: String,
//! }
//!
//! impl Plugin for RequireHeader {
//!     type Config = Config;
//!
//!     fn new(config: Config) -> Result<Self, String> {
//!         Ok(Self { header: config.header })
//!     }
//!
//!     fn on_request(&mut self, req: &mut Request<'_>) -> Action {
//!         match req.header(&self.header) {
//!             Some(_) => Action::Continue,
//!             None => Action::respond(400).body("missing header").into(),
//!         }
//!     }
//! }
//!
//! weir_sdk::export!(RequireHeader);
//!
//! // The same code runs natively under the test host:
//! use weir_sdk::testing::{TestHost, TestRequest};
//! let mut host = TestHost::<RequireHeader>::new(serde_json::json!({ "header": "x-team" })).unwrap();
//! assert_eq!(host.run(TestRequest::get("/")).status(), 400);
//! assert_eq!(host.run(TestRequest::get("/").header("x-team", "a")).status(), 200);
//! ```
//!
//! # Native tests
//!
//! Every host call goes through one internal seam: on `target_family =
//! "wasm"` it is the generated WIT import; on every other target it is an
//! in-memory host, which the `testing` module (compiled for native targets
//! only) drives, so `cargo test` runs a plugin's phases with no WebAssembly
//! involved, and the plugin's code is the same in both builds.

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod action;
mod backend;
pub mod calls;
pub mod context;
#[cfg(target_family = "wasm")]
mod export;
pub mod fleet;
mod http;
mod limits;
pub mod log;
pub mod metrics;
mod panic;
mod phases;
mod plugin;
pub mod random;
pub mod state;
#[cfg(not(target_family = "wasm"))]
pub mod testing;
pub mod time;
mod types;
pub mod validate;

pub use action::{Action, BodyAction, Reply, ResponseAction};
pub use http::{Head, Request, Response};
pub use phases::Phases;
pub use plugin::Plugin;
pub use types::ClientCert;

/// The generated bindings; see the module's own documentation. Not part of
/// the API: plugins use the types above; [`export!`] refers to this module.
#[cfg(target_family = "wasm")]
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings;

/// Compiles the Rust examples of `sdk/README.md` as doctests, so the guide
/// cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Items the [`export!`] macro needs to name from the plugin's crate.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_family = "wasm")]
    pub use crate::export::Guest;
}

/// Exports a [`Plugin`] as the component's `guest` interface.
///
/// Use it once per plugin crate, at the top level. On Wasm targets it
/// generates the component's exports; on native targets it expands to
/// nothing, so the same source builds for `cargo test`.
///
/// # Example
///
/// ```
/// use weir_sdk::Plugin;
///
/// struct Noop;
///
/// impl Plugin for Noop {
///     type Config = serde::de::IgnoredAny;
///     fn new(_: Self::Config) -> Result<Self, String> {
///         Ok(Noop)
///     }
/// }
///
/// weir_sdk::export!(Noop);
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            type __WeirGuest = $crate::__private::Guest<$plugin>;
    $crate::bindings::__export_plugin!(__WeirGuest with_types_in $crate::bindings);
        };
    };
}
