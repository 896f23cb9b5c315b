//! The header calls of `weir:plugin/http`, bound by hand. They are the
//! host calls plugins make on nearly every request; the versions
//! `bindgen!` generates (in `host.rs`, still linked first) lift every
//! string argument into a new `String` before the call. These read the
//! header name where it lies in the plugin's memory (copied to the stack
//! when it is at most [`INLINE_NAME`] bytes) and copy a value once, into
//! the buffer that becomes the `HeaderValue`. Validation, bounds and
//! answers are those of `host.rs`: reads use the same helpers, and writes
//! go through the same `Call::write_header` as the generated setters (the
//! budget, and the refusals an answer keeps), so a plugin cannot tell the
//! two apart except by speed.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderMap;
use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentNamedList, Linker, LinkerInstance, Lower, Resource, WasmStr};

use super::bindings::FieldsHandle;
use super::host::{self, Side, StoreData, limits};

/// Header names up to this many bytes are read onto the stack; longer ones
/// (rare, and refused anyway past `MAX_HEADER_BYTES_PER_CALL`) are copied
/// to the heap.
pub const INLINE_NAME: usize = 128;

/// A header name read out of the plugin's memory.
enum Name {
    Inline([u8; INLINE_NAME], usize),
    Heap(String),
}

impl Name {
    /// Reads `s`; a string that is not UTF-8 traps, as it does when
    /// `bindgen!`'s code lifts it.
    fn read(store: &StoreContextMut<'_, StoreData>, s: &WasmStr) -> wasmtime::Result<Name> {
        let text = s.to_str(store)?;
        Ok(match text {
            Cow::Borrowed(t) if t.len() <= INLINE_NAME => {
                let mut buf = [0; INLINE_NAME];
                buf[..t.len()].copy_from_slice(t.as_bytes());
                Name::Inline(buf, t.len())
            }
            other => Name::Heap(other.into_owned()),
        })
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `str` whole: always valid UTF-8.
            Name::Inline(buf, n) => std::str::from_utf8(&buf[..*n]).unwrap_or_default(),
            Name::Heap(s) => s,
        }
    }
}

/// Reads a header value out of the plugin's memory into the buffer the
/// header will keep; a value past [`limits::MAX_HEADER_VALUE_BYTES`] is
/// refused before it is copied.
fn value(
    store: &StoreContextMut<'_, StoreData>,
    s: &WasmStr,
) -> wasmtime::Result<Result<Bytes, String>> {
    let text = s.to_str(store)?;
    if text.len() > limits::MAX_HEADER_VALUE_BYTES {
        return Ok(Err(host::value_too_long()));
    }
    Ok(Ok(match text {
        Cow::Borrowed(t) => Bytes::copy_from_slice(t.as_bytes()),
        Cow::Owned(t) => Bytes::from(t),
    }))
}

/// Binds a `fields` method that takes a header name and works on the
/// head its handle names with `f`.
fn by_name<R>(
    i: &mut LinkerInstance<'_, StoreData>,
    name: &str,
    f: fn(&mut HeaderMap, &str) -> R,
) -> wasmtime::Result<()>
where
    R: ComponentNamedList + Lower + 'static,
{
    i.func_wrap(
        name,
        move |mut store: StoreContextMut<'_, StoreData>,
              (h, n): (Resource<FieldsHandle>, WasmStr)| {
            let n = Name::read(&store, &n)?;
            Ok(f(store.data_mut().call.head(Side::of(&h)), n.as_str()))
        },
    )
}

/// Shadows the generated header methods of `fields` in `linker`
/// (which must already hold the generated ones, so every other function
/// of the interface stays as generated).
pub(crate) fn link(linker: &mut Linker<StoreData>, interface: &str) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut i = linker.instance(interface)?;
    by_name(&mut i, "[method]fields.get", |h, n| (host::get(h, n),))?;
    by_name(&mut i, "[method]fields.get-all", |h, n| {
        (host::get_all(h, n),)
    })?;
    by_name(&mut i, "[method]fields.remove", host::remove)?;
    for (m, append) in [("[method]fields.set", false), ("[method]fields.add", true)] {
        i.func_wrap(
            m,
            move |mut store: StoreContextMut<'_, StoreData>,
                  (h, name, v): (Resource<FieldsHandle>, WasmStr, WasmStr)| {
                let name = Name::read(&store, &name)?;
                let v = value(&store, &v)?;
                let call = &mut store.data_mut().call;
                Ok((call.write_header(Side::of(&h), name.as_str(), v, append),))
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}
