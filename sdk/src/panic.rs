//! The panic hook the SDK installs for a plugin: it sends the panic's
//! message and location to the host as one error line, so the gateway can
//! report a trap as `panicked at src/lib.rs:42:5: message` rather than as
//! the failed write to stderr that Rust's own hook would make (plugins
//! have no stdio). The line starts with [`PANIC_PREFIX`] and is at most
//! [`MAX_PANIC_BYTES`] long; the gateway keeps it for the call's failure
//! line instead of logging it on its own. The native test host gets the
//! same line in its logs.

use std::sync::Once;

use crate::backend;
use crate::limits::log::{MAX_PANIC_BYTES, PANIC_PREFIX};

/// Installs the hook, once per instance (a Wasm instance has its own
/// memory, so its own `Once`) or once per test process (native, where the
/// previous hook still runs after ours so the test's output keeps the
/// panic).
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            backend::panicked(&line(info));
            if !cfg!(target_family = "wasm") {
                previous(info);
            }
        }));
    });
}

/// `panicked at FILE:LINE:COLUMN: MESSAGE`, one line of at most
/// [`MAX_PANIC_BYTES`] after the prefix (cut on a character boundary).
fn line(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let mut text = match info.location() {
        Some(at) => format!(
            "panicked at {}:{}:{}: {message}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("panicked: {message}"),
    };
    if text.contains(['\n', '\r']) {
        text = text.replace('\n', "\\n").replace('\r', "\\r");
    }
    if text.len() > MAX_PANIC_BYTES {
        let mut at = MAX_PANIC_BYTES;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
    format!("{PANIC_PREFIX}{text}")
}
