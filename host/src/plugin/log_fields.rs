//! The fields plugins add to one request's access-log line (`log-field`).
//! A request has one [`LogFields`], shared by every plugin of its chain:
//! the pipeline keeps it in its plugin scope, lends it to the store for
//! each call as it lends the request head, and hands it to the access log
//! before the log phase, after which a `log-field` call is refused. What a
//! plugin hands in is checked here against the bounds below (also listed
//! in `host::limits`); values are never logged, since they may be
//! identities (a consumer, a subject).

/// The most fields one request carries, all plugins of its chain together.
pub const MAX_LOG_FIELDS: usize = 16;
/// The longest field name, in bytes.
pub const MAX_LOG_FIELD_NAME_BYTES: usize = 64;
/// The longest field value, in bytes.
pub const MAX_LOG_FIELD_VALUE_BYTES: usize = 512;

/// Where a request is relative to its access-log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// No request is lent (a store between calls, `init`).
    NoRequest,
    /// The line is still to be written: fields can be set.
    Open,
    /// The fields went to the access log (the log phase).
    Written,
}

/// The access-log fields plugins set for one request, in the order first
/// set. Empty until a plugin sets one: a request whose plugins set none
/// allocates nothing.
#[derive(Debug)]
pub struct LogFields {
    fields: Vec<(String, String)>,
    window: Window,
}

impl LogFields {
    /// The fields of a request about to run its plugins: none yet.
    pub fn for_request() -> LogFields {
        LogFields {
            fields: Vec::new(),
            window: Window::Open,
        }
    }

    /// What a store holds outside a call: setting a field there is refused.
    pub(crate) fn no_request() -> LogFields {
        LogFields {
            fields: Vec::new(),
            window: Window::NoRequest,
        }
    }

    /// Takes the fields for the access log, leaving their place closed:
    /// later calls (the log phase) are refused.
    pub fn take(&mut self) -> LogFields {
        std::mem::replace(
            self,
            LogFields {
                fields: Vec::new(),
                window: Window::Written,
            },
        )
    }

    /// The fields, as (name, value), in the order first set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// A plugin's `log-field`: sets `name` to `value`, or replaces its
    /// value, within the bounds. The error names the rule that refused it
    /// and never quotes the value.
    pub(crate) fn set(&mut self, name: String, value: String) -> Result<(), String> {
        match self.window {
            Window::Open => {}
            Window::NoRequest => {
                return Err("log fields belong to a request, and init runs outside one".into());
            }
            Window::Written => {
                return Err("the access-log line is already written: the log phase \
                            cannot set log fields"
                    .into());
            }
        }
        check(&name, &value)?;
        if let Some(slot) = self.fields.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
            return Ok(());
        }
        if self.fields.len() >= MAX_LOG_FIELDS {
            return Err(format!(
                "at most {MAX_LOG_FIELDS} log fields per request (all plugins of the chain \
                 together)"
            ));
        }
        self.fields.push((name, value));
        Ok(())
    }
}

/// The rules on a field's name and value, as the SDK's
/// `validate::log_field` states them (with the same errors).
pub(crate) fn check(name: &str, value: &str) -> Result<(), String> {
    let name_ok = (1..=MAX_LOG_FIELD_NAME_BYTES).contains(&name.len())
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
    if !name_ok {
        return Err(format!(
            "a log field name is 1 to {MAX_LOG_FIELD_NAME_BYTES} bytes of a-z, 0-9, `_`, `.` \
             and `-`, starting with a letter"
        ));
    }
    if value.len() > MAX_LOG_FIELD_VALUE_BYTES {
        return Err(format!(
            "a log field value is at most {MAX_LOG_FIELD_VALUE_BYTES} bytes"
        ));
    }
    // A control character could end the line, or forge another, in a
    // log read as text.
    if value.chars().any(char::is_control) {
        return Err("a log field value cannot hold control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(f: &mut LogFields, name: &str, value: &str) -> Result<(), String> {
        f.set(name.to_owned(), value.to_owned())
    }

    #[test]
    fn names_values_and_count_are_bounded() {
        let mut f = LogFields::for_request();
        assert!(f.is_empty());
        set(&mut f, "consumer", "ada").unwrap();
        set(&mut f, "a.b-c_9", "").unwrap();
        let name = "n".repeat(MAX_LOG_FIELD_NAME_BYTES);
        set(&mut f, &name, "x").unwrap();
        for bad in [
            "",
            "9lives",
            "_x",
            "Consumer",
            "con sumer",
            "ümlaut",
            "a/b",
            "a\n",
        ] {
            let e = set(&mut f, bad, "v").unwrap_err();
            assert!(
                e.starts_with("a log field name is 1 to 64 bytes"),
                "{bad:?}: {e}"
            );
        }
        let e = set(&mut f, &format!("{name}n"), "v").unwrap_err();
        assert!(e.contains("1 to 64 bytes"), "{e}");

        set(&mut f, "long", &"v".repeat(MAX_LOG_FIELD_VALUE_BYTES)).unwrap();
        // 512 bytes of UTF-8, not characters.
        let e = set(&mut f, "long", &"\u{e9}".repeat(257)).unwrap_err();
        assert_eq!(e, "a log field value is at most 512 bytes");
        for bad in ["a\nb", "a\rb", "tab\t", "nul\0", "del\u{7f}", "c1\u{85}"] {
            let e = set(&mut f, "ctl", bad).unwrap_err();
            assert_eq!(e, "a log field value cannot hold control characters");
            // The value is never quoted back.
            assert!(!e.contains(bad));
        }
        set(&mut f, "utf8", "caf\u{e9} \u{1f600}").unwrap();

        let before = f.iter().count();
        for i in before..MAX_LOG_FIELDS {
            set(&mut f, &format!("f{i}"), "v").unwrap();
        }
        let e = set(&mut f, "one-more", "v").unwrap_err();
        assert_eq!(
            e,
            "at most 16 log fields per request (all plugins of the chain together)"
        );
        // Replacing a field is not a new one, at the bound too.
        set(&mut f, "consumer", "grace").unwrap();
        let fields: Vec<_> = f.iter().collect();
        assert_eq!(fields.len(), MAX_LOG_FIELDS);
        assert_eq!(fields[0], ("consumer", "grace"));
    }

    #[test]
    fn the_log_phase_and_init_are_refused() {
        let mut f = LogFields::for_request();
        set(&mut f, "consumer", "ada").unwrap();
        let taken = f.take();
        assert_eq!(taken.iter().collect::<Vec<_>>(), [("consumer", "ada")]);
        let e = set(&mut f, "late", "v").unwrap_err();
        assert!(e.contains("already written"), "{e}");
        assert!(f.is_empty());
        // Taken twice (the access log, then the log phase): still closed.
        assert!(f.take().is_empty());
        assert!(set(&mut f, "late", "v").is_err());

        let e = set(&mut LogFields::no_request(), "consumer", "ada").unwrap_err();
        assert!(e.contains("init runs outside"), "{e}");
    }

    #[test]
    fn no_field_no_allocation() {
        let f = LogFields::for_request();
        assert_eq!(f.fields.capacity(), 0);
    }
}
