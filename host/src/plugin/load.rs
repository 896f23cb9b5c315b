//! Turning a `NAME.wasm` file into a [`Compiled`] plugin: read it within a
//! size cap, refuse what is not a component or was built against another
//! version of the contract (with a message that says which), compile it,
//! and pre-instantiate it against the linker once. Nothing here runs
//! plugin code; `init` runs when the first instance is made (`pool`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::bindings;
use super::engine::Runtime;
use super::host::StoreData;
use crate::config::PluginSettings;

/// The contract version this gateway speaks; a plugin must import and
/// export `weir:plugin/*` at a semver-compatible version (0.2.x).
pub const CONTRACT: &str = "weir:plugin@0.2.0";
const CONTRACT_COMPATIBLE: &str = "0.2.";

/// Largest plugin file read.
pub const MAX_PLUGIN_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a plugin named by the configuration cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: plugin `{name}`: {reason}", path.display())]
pub struct PluginError {
    pub name: String,
    pub path: PathBuf,
    pub reason: String,
}

/// Every plugin problem found at once, one per line.
#[derive(Debug, Clone)]
pub struct PluginErrors(pub Vec<PluginError>);

impl std::fmt::Display for PluginErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginErrors {}

/// A compiled, pre-instantiated plugin: what one version of `NAME.wasm`
/// becomes. Instances are made from it cheaply.
pub struct Compiled {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub settings: PluginSettings,
    pub(crate) pre: bindings::PluginPre<StoreData>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Reads, checks and compiles one plugin file.
pub fn compile(
    runtime: &Runtime,
    name: &str,
    path: &Path,
    settings: PluginSettings,
) -> Result<Compiled, PluginError> {
    let fail = |reason: String| PluginError {
        name: name.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let meta =
        std::fs::metadata(path).map_err(|e| fail(format!("cannot read the plugin file: {e}")))?;
    if meta.len() > MAX_PLUGIN_FILE_BYTES {
        return Err(fail(format!(
            "the file is {} bytes; plugins are at most {MAX_PLUGIN_FILE_BYTES}",
            meta.len()
        )));
    }
    let bytes =
        std::fs::read(path).map_err(|e| fail(format!("cannot read the plugin file: {e}")))?;
    check_preamble(&bytes).map_err(fail)?;
    let component = Component::new(&runtime.engine, &bytes)
        .map_err(|e| fail(format!("not a valid component: {e:#}")))?;
    check_contract(runtime, &component).map_err(fail)?;

    let mut linker = runtime.linker.clone();
    // WASI imports beyond the few `engine` links become functions that
    // trap when called: the plugin loads, but cannot reach the system.
    stub_other_wasi(&mut linker, runtime, &component)
        .map_err(|e| fail(format!("cannot link: {e:#}")))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| fail(format!("cannot link: {e:#}")))?;
    let pre = bindings::PluginPre::new(pre)
        .map_err(|e| fail(format!("does not implement {CONTRACT}: {e:#}")))?;
    Ok(Compiled {
        name: name.into(),
        path: path.to_owned(),
        settings,
        pre,
    })
}

/// The 8-byte preamble says what kind of Wasm binary this is; checking it
/// first turns wasmtime's parser error into advice.
fn check_preamble(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly file (no `\\0asm` header)".into());
    }
    // Bytes 6..8 are the layer: 0 for a core module, 1 for a component.
    if bytes[6..8] == [0, 0] {
        return Err(format!(
            "this is a core WebAssembly module, not a component: plugins are components implementing {CONTRACT}, built with `cargo build --target wasm32-wasip2`"
        ));
    }
    Ok(())
}

/// Refuses a component built against another version of the contract, or
/// one that imports something the gateway does not provide.
fn check_contract(runtime: &Runtime, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    let mut exports_guest = false;
    for (name, _) in ty.exports(&runtime.engine) {
        if let Some(version) = weir_version(name) {
            if !version.starts_with(CONTRACT_COMPATIBLE) {
                return Err(format!(
                    "built against weir:plugin@{version}, but this gateway provides {CONTRACT}; rebuild it with a weir-sdk for {CONTRACT}"
                ));
            }
            exports_guest |= name.starts_with("weir:plugin/guest@");
        }
    }
    for (name, item) in ty.imports(&runtime.engine) {
        if let Some(version) = weir_version(name) {
            if !version.starts_with(CONTRACT_COMPATIBLE) {
                return Err(format!(
                    "imports {name}, but this gateway provides {CONTRACT}; rebuild it with a weir-sdk for {CONTRACT}"
                ));
            }
        } else if !name.starts_with("wasi:")
            || !matches!(item.ty, ComponentItem::ComponentInstance(_))
        {
            return Err(format!(
                "imports `{name}`, which the gateway does not provide"
            ));
        }
    }
    if !exports_guest {
        return Err(format!("does not export weir:plugin/guest from {CONTRACT}"));
    }
    Ok(())
}

/// Links every WASI interface the component imports and `engine` does not
/// provide to functions that trap when called. wasmtime's own
/// `define_unknown_imports_as_traps` matches names exactly, so a plugin
/// importing `wasi:random/insecure-seed@0.2.6` would get a trap in front
/// of the `@0.2.12` implementation the linker already holds (semver
/// matching only applies to names the linker lacks); interfaces are
/// therefore compared without their version here.
fn stub_other_wasi(
    linker: &mut wasmtime::component::Linker<StoreData>,
    runtime: &Runtime,
    component: &Component,
) -> wasmtime::Result<()> {
    let ty = component.component_type();
    for (name, item) in ty.imports(&runtime.engine) {
        let interface = name.split_once('@').map_or(name, |(i, _)| i);
        if !name.starts_with("wasi:") || super::engine::PROVIDED_WASI.contains(&interface) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut stub = linker.instance(name)?;
        for (export, export_ty) in instance.exports(&runtime.engine) {
            match export_ty.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    stub.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!("`{what}` is not available to plugins")
                    })?;
                }
                ComponentItem::Resource(_) => {
                    stub.resource(
                        export,
                        wasmtime::component::ResourceType::host::<()>(),
                        |_, _| Ok(()),
                    )?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The version of a `weir:plugin/...@VERSION` name.
fn weir_version(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("weir:plugin/")?;
    Some(rest.split_once('@').map_or("(unversioned)", |(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preamble_tells_modules_from_components() {
        let module = wat::parse_str("(module)").unwrap();
        let err = check_preamble(&module).unwrap_err();
        assert!(
            err.contains("core WebAssembly module, not a component"),
            "{err}"
        );
        assert!(
            check_preamble(b"hello")
                .unwrap_err()
                .contains("not a WebAssembly file")
        );
        let component = wat::parse_str("(component)").unwrap();
        check_preamble(&component).unwrap();
    }

    #[test]
    fn versions_are_read_from_names() {
        assert_eq!(weir_version("weir:plugin/guest@0.2.0"), Some("0.2.0"));
        assert_eq!(weir_version("weir:plugin/host"), Some("(unversioned)"));
        assert_eq!(weir_version("wasi:io/streams@0.2.0"), None);
    }
}
