//! The one seam between the SDK and its host. On `target_family = "wasm"`
//! every function here is the generated WIT import (`wasm`); on native
//! targets the same functions are served by an in-memory host (`native`),
//! which [`testing`](crate::testing) drives. Nothing above this module
//! knows which one is compiled.
//!
//! Each side also names the handles a request and a response are reached
//! through (`RequestRef`, `ResponseRef`), both with the header operations of
//! [`HeaderFields`].

mod fields;
#[cfg(not(target_family = "wasm"))]
pub(crate) mod native;
#[cfg(target_family = "wasm")]
mod wasm;

pub(crate) use fields::HeaderFields;
#[cfg(not(target_family = "wasm"))]
pub(crate) use native::*;
#[cfg(target_family = "wasm")]
pub(crate) use wasm::*;
