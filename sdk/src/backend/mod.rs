//! The one seam between the SDK and its host. On `target_family = "wasm"`
//! every function here is the generated WIT import and the guest export is
//! wired to [`Plugin`](crate::Plugin); on native targets the same functions
//! are served by the in-memory host of [`testing`](crate::testing). Nothing
//! outside this module (and `testing`) knows which one is compiled.

#[cfg(target_family = "wasm")]
pub(crate) mod wasm;
#[cfg(target_family = "wasm")]
pub(crate) use wasm::*;

#[cfg(not(target_family = "wasm"))]
pub(crate) use crate::testing::backend::*;
