//! The transform rules: raw configuration (serde, unknown fields refused)
//! and its validated form. Everything a rule can get wrong on its own (bad
//! header names, regexes, pointers, too many rules) is refused here, at
//! deploy time, so the phases only meet errors caused by the request.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use weir_sdk::{Request, Response, validate};

use crate::json::{self, Pointer};

/// The most rules of one kind (e.g. request header `set`) per route.
pub const MAX_RULES: usize = 100;
/// The longest path regex accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// The most memory a compiled path regex may use, in bytes.
pub const MAX_REGEX_BYTES: usize = 1 << 20;

/// Raw configuration, as written in the route's `config` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rules for the request's headers.
    #[serde(default)]
    pub request_headers: HeaderConfig,
    /// Rules for the response's headers.
    #[serde(default)]
    pub response_headers: HeaderConfig,
    /// A regex rewrite of the request path.
    #[serde(default)]
    pub path: Option<PathConfig>,
    /// Edits of a JSON request body.
    #[serde(default)]
    pub json_body: Option<BodyConfig>,
}

/// Header rules, applied in the order remove, rename, set, add.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    /// Headers to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Old name → new name; the values move (replacing the new name's).
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Name → value, replacing existing values.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Name → value, added after existing values.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// A path rewrite: the first match of `pattern` is replaced by
/// `replacement` (`$1`, `${name}` refer to capture groups).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    /// The regex, matched against the path (without the query).
    pub pattern: String,
    /// The replacement template.
    pub replacement: String,
}

/// JSON body edits, applied in the order remove, set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyConfig {
    /// JSON pointer → value to set (missing parent objects are created).
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// JSON pointers to remove (absent ones are ignored).
    #[serde(default)]
    pub remove: Vec<String>,
}

fn check_count(field: &str, count: usize) -> Result<(), String> {
    if count > MAX_RULES {
        return Err(format!("{field}: at most {MAX_RULES} rules"));
    }
    Ok(())
}

/// Validated header rules.
#[derive(Debug, Default)]
pub struct HeaderRules {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
}

/// The header operations requests and responses share.
pub trait HeaderAccess {
    /// Every value of a header.
    fn all(&self, name: &str) -> Vec<String>;
    /// Removes a header.
    fn remove(&mut self, name: &str);
    /// Replaces a header's values.
    fn set(&mut self, name: &str, value: &str) -> Result<(), String>;
    /// Adds a header value.
    fn add(&mut self, name: &str, value: &str) -> Result<(), String>;
}

impl HeaderAccess for Request<'_> {
    fn all(&self, name: &str) -> Vec<String> {
        self.header_all(name)
    }
    fn remove(&mut self, name: &str) {
        self.remove_header(name)
    }
    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.set_header(name, value)
    }
    fn add(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.add_header(name, value)
    }
}

impl HeaderAccess for Response<'_> {
    fn all(&self, name: &str) -> Vec<String> {
        self.header_all(name)
    }
    fn remove(&mut self, name: &str) {
        self.remove_header(name)
    }
    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.set_header(name, value)
    }
    fn add(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.add_header(name, value)
    }
}

impl HeaderRules {
    /// Whether there is nothing to do (the phase need not run at all).
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    /// Validates every name and value; `field` prefixes the errors.
    pub fn new(field: &str, config: HeaderConfig) -> Result<Self, String> {
        for (kind, count) in [
            ("remove", config.remove.len()),
            ("rename", config.rename.len()),
            ("set", config.set.len()),
            ("add", config.add.len()),
        ] {
            check_count(&format!("{field}.{kind}"), count)?;
        }
        for name in &config.remove {
            validate::header_name(name).map_err(|e| format!("{field}.remove: {e}"))?;
        }
        for (old, new) in &config.rename {
            validate::header_name(old).map_err(|e| format!("{field}.rename: {e}"))?;
            validate::header_name(new).map_err(|e| format!("{field}.rename: {e}"))?;
        }
        for (kind, pairs) in [("set", &config.set), ("add", &config.add)] {
            for (name, value) in pairs {
                validate::header_name(name).map_err(|e| format!("{field}.{kind}: {e}"))?;
                validate::header_value(name, value).map_err(|e| format!("{field}.{kind}: {e}"))?;
            }
        }
        Ok(Self {
            remove: config.remove,
            rename: config.rename.into_iter().collect(),
            set: config.set.into_iter().collect(),
            add: config.add.into_iter().collect(),
        })
    }

    /// Applies the rules. Names and values were validated in
    /// [`HeaderRules::new`], and values moved by a rename were already
    /// accepted by the host, so the writes cannot be refused.
    pub fn apply(&self, target: &mut impl HeaderAccess) {
        for name in &self.remove {
            target.remove(name);
        }
        for (old, new) in &self.rename {
            let values = target.all(old);
            if values.is_empty() {
                continue;
            }
            target.remove(old);
            target.remove(new);
            for value in &values {
                let _ = target.add(new, value);
            }
        }
        for (name, value) in &self.set {
            let _ = target.set(name, value);
        }
        for (name, value) in &self.add {
            let _ = target.add(name, value);
        }
    }
}

/// A validated path rewrite.
#[derive(Debug)]
pub struct PathRewrite {
    pattern: Regex,
    replacement: String,
}

impl PathRewrite {
    /// Compiles the regex within the size bounds.
    pub fn new(config: PathConfig) -> Result<Self, String> {
        if config.pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!("path.pattern: at most {MAX_PATTERN_BYTES} bytes"));
        }
        let pattern = RegexBuilder::new(&config.pattern)
            .size_limit(MAX_REGEX_BYTES)
            .build()
            .map_err(|e| format!("path.pattern: {e}"))?;
        Ok(Self {
            pattern,
            replacement: config.replacement,
        })
    }

    /// The path with the first match replaced (unchanged without a match).
    pub fn apply(&self, path: &str) -> String {
        self.pattern
            .replace(path, self.replacement.as_str())
            .into_owned()
    }
}

/// Validated JSON body edits.
#[derive(Debug)]
pub struct BodyRules {
    remove: Vec<Pointer>,
    set: Vec<(Pointer, serde_json::Value)>,
}

impl BodyRules {
    /// Parses every pointer.
    pub fn new(config: BodyConfig) -> Result<Self, String> {
        check_count("json_body.set", config.set.len())?;
        check_count("json_body.remove", config.remove.len())?;
        if config.set.is_empty() && config.remove.is_empty() {
            return Err("json_body: give at least one of set or remove".to_owned());
        }
        let remove = config
            .remove
            .iter()
            .map(|p| Pointer::parse(p).map_err(|e| format!("json_body.remove: {e}")))
            .collect::<Result<_, _>>()?;
        let set = config
            .set
            .into_iter()
            .map(|(p, value)| {
                Pointer::parse(&p)
                    .map(|pointer| (pointer, value))
                    .map_err(|e| format!("json_body.set: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { remove, set })
    }

    /// Parses the body, applies the edits, serializes it again. The error
    /// is a message for the client (its body was not what the route takes).
    pub fn apply(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        // serde_json bounds nesting at 128 levels, so a hostile body cannot
        // exhaust the stack.
        let mut doc: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| "request body is not valid JSON".to_owned())?;
        for pointer in &self.remove {
            json::remove(&mut doc, pointer);
        }
        for (pointer, value) in &self.set {
            json::set(&mut doc, pointer, value.clone())?;
        }
        Ok(serde_json::to_vec(&doc).expect("a JSON value always serializes"))
    }
}
