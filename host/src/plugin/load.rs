//! Turning a `NAME.wasm` file into a [`Compiled`] plugin: read it within a
//! size cap, refuse what is not a component or was built against another
//! version of the contract (with a message that says which), compile it,
//! and pre-instantiate it against the linker once. Nothing here runs
//! plugin code; `init` runs when the first instance is made (`pool`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::bindings::{self, CONTRACT, CONTRACT_COMPATIBLE};
use super::engine::{Runtime, Tier};
use super::host::StoreData;
use crate::config::PluginSettings;

/// Largest plugin file read.
pub const MAX_PLUGIN_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The step of turning a file into a serving plugin that failed: logs
/// and the admin view name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the file (missing, unreadable, too large, still changing).
    Read,
    /// Checking what kind of file it is and which contract it speaks.
    Validate,
    /// Compiling it to native code.
    Compile,
    /// Linking it against the host functions.
    Link,
    /// Making an instance and running `init` with a route's configuration.
    Init,
    /// The whole deployment took longer than `plugins.compile_timeout`.
    Timeout,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Read => "read",
            Step::Validate => "validate",
            Step::Compile => "compile",
            Step::Link => "link",
            Step::Init => "init",
            Step::Timeout => "timeout",
        }
    }
}

/// Why a plugin named by the configuration cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: plugin `{name}`: {reason}", path.display())]
pub struct PluginError {
    pub name: String,
    pub path: PathBuf,
    pub step: Step,
    /// The sha256 of the file, when it could be read.
    pub sha256: Option<String>,
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
    /// The sha256 of the file this was compiled from.
    pub sha256: String,
    /// When this version was compiled and put in service.
    pub deployed_at: SystemTime,
    pub settings: PluginSettings,
    /// The engine the code was compiled for, and so which compiler made it.
    pub runtime: Arc<Runtime>,
    pub(crate) pre: bindings::PluginPre<StoreData>,
}

impl Compiled {
    pub fn tier(&self) -> Tier {
        self.runtime.tier
    }

    /// The same compiled code with other settings (a reload that changed
    /// only `[plugin_limits.NAME]`): nothing is recompiled.
    pub fn with_settings(&self, settings: PluginSettings) -> Compiled {
        Compiled {
            name: self.name.clone(),
            path: self.path.clone(),
            sha256: self.sha256.clone(),
            deployed_at: SystemTime::now(),
            settings,
            runtime: self.runtime.clone(),
            pre: self.pre.clone(),
        }
    }
}

/// A plugin file read whole, with its hash.
#[derive(Debug, Clone)]
pub struct PluginFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Reads a plugin file whole, within [`MAX_PLUGIN_FILE_BYTES`]. A file
/// that changes while it is read (a writer still at work) is refused: the
/// next change event reads it again.
pub fn read(name: &str, path: &Path) -> Result<PluginFile, PluginError> {
    let fail = |reason: String| PluginError {
        name: name.to_owned(),
        path: path.to_owned(),
        step: Step::Read,
        sha256: None,
        reason,
    };
    let cannot = |e: std::io::Error| fail(format!("cannot read the plugin file: {e}"));
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let before = file.metadata().map_err(cannot)?;
    if before.len() > MAX_PLUGIN_FILE_BYTES {
        return Err(fail(format!(
            "the file is {} bytes; plugins are at most {MAX_PLUGIN_FILE_BYTES}",
            before.len()
        )));
    }
    let mut bytes = Vec::with_capacity(before.len() as usize);
    (&mut file)
        .take(MAX_PLUGIN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    let after = file.metadata().map_err(cannot)?;
    if bytes.len() as u64 > MAX_PLUGIN_FILE_BYTES {
        return Err(fail(format!(
            "the file grew past {MAX_PLUGIN_FILE_BYTES} bytes while it was read"
        )));
    }
    if bytes.len() as u64 != after.len() || before.modified().ok() != after.modified().ok() {
        return Err(fail(
            "the file changed while it was read (still being written); it is read again on its next change"
                .into(),
        ));
    }
    let sha256 = crate::digest::sha256_hex(&bytes);
    Ok(PluginFile {
        path: path.to_owned(),
        bytes,
        sha256,
    })
}

/// Checks and compiles one plugin file and pre-instantiates it. Runs no
/// plugin code. An optimized build leaves a marker in the cache folder
/// (see [`Runtime::cached_marker`]).
pub fn compile(
    runtime: &Arc<Runtime>,
    name: &str,
    file: &PluginFile,
    settings: PluginSettings,
) -> Result<Compiled, PluginError> {
    let fail = |step: Step, reason: String| PluginError {
        name: name.to_owned(),
        path: file.path.clone(),
        step,
        sha256: Some(file.sha256.clone()),
        reason,
    };
    check_preamble(&file.bytes).map_err(|r| fail(Step::Validate, r))?;
    let component = Component::new(&runtime.engine, &file.bytes)
        .map_err(|e| fail(Step::Compile, format!("not a valid component: {e:#}")))?;
    check_contract(runtime, &component).map_err(|r| fail(Step::Validate, r))?;

    let mut linker = runtime.linker.clone();
    // WASI imports beyond the few `engine` links become functions that
    // trap when called: the plugin loads, but cannot reach the system.
    stub_other_wasi(&mut linker, runtime, &component)
        .map_err(|e| fail(Step::Link, format!("cannot link: {e:#}")))?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| fail(Step::Link, format!("cannot link: {e:#}")))?;
    let pre = bindings::PluginPre::new(pre)
        .map_err(|e| fail(Step::Link, format!("does not implement {CONTRACT}: {e:#}")))?;
    if let Some(marker) = runtime.cached_marker(&file.sha256) {
        // Best effort: without the marker a later deploy of this file
        // only takes the baseline path first.
        let _ = marker
            .parent()
            .map(std::fs::create_dir_all)
            .and_then(Result::ok)
            .map(|()| std::fs::write(&marker, b""));
    }
    Ok(Compiled {
        name: name.into(),
        path: file.path.clone(),
        sha256: file.sha256.clone(),
        deployed_at: SystemTime::now(),
        settings,
        runtime: runtime.clone(),
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
    use crate::plugin::bindings::HTTP_INTERFACE;

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
        assert_eq!(CONTRACT, "weir:plugin@0.9.0");
        assert_eq!(HTTP_INTERFACE, "weir:plugin/http@0.9.0");
        assert_eq!(weir_version("weir:plugin/host"), Some("(unversioned)"));
        assert_eq!(weir_version("wasi:io/streams@0.2.0"), None);
    }
}
