//! JSON pointers (RFC 6901) and the two edits `transform` makes with them:
//! set a value (creating missing parent objects) and remove one.

use serde_json::{Map, Value};

/// The deepest pointer accepted (tokens).
pub const MAX_DEPTH: usize = 32;

/// A parsed, non-empty JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// Parses `/a/b~1c/0`; the empty pointer (the whole document) is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer (must start with '/')"
            ));
        };
        let tokens: Vec<String> = rest
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        if tokens.len() > MAX_DEPTH {
            return Err(format!("{text:?} is deeper than {MAX_DEPTH} levels"));
        }
        Ok(Self {
            text: text.to_owned(),
            tokens,
        })
    }
}

/// Sets the value at `pointer`, creating missing objects on the way. An
/// array index must exist, or be `-` or the length (append).
pub fn set(doc: &mut Value, pointer: &Pointer, value: Value) -> Result<(), String> {
    let (last, parents) = pointer.tokens.split_last().expect("pointers are non-empty");
    let mut node = doc;
    for token in parents {
        node = match node {
            Value::Object(map) => map
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => match index(token, items.len()) {
                Some(i) if i < items.len() => &mut items[i],
                _ => {
                    return Err(format!(
                        "cannot set {}: no array element {token:?}",
                        pointer.text
                    ));
                }
            },
            _ => {
                return Err(format!(
                    "cannot set {}: a parent is not an object",
                    pointer.text
                ));
            }
        };
    }
    match node {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => match index(last, items.len()) {
            Some(i) if i < items.len() => {
                items[i] = value;
                Ok(())
            }
            Some(i) if i == items.len() => {
                items.push(value);
                Ok(())
            }
            _ => Err(format!(
                "cannot set {}: no array element {last:?}",
                pointer.text
            )),
        },
        _ => Err(format!(
            "cannot set {}: the parent is not an object",
            pointer.text
        )),
    }
}

/// Removes the value at `pointer`; absent values are ignored.
pub fn remove(doc: &mut Value, pointer: &Pointer) {
    let (last, parents) = pointer.tokens.split_last().expect("pointers are non-empty");
    let mut node = doc;
    for token in parents {
        node = match node {
            Value::Object(map) => match map.get_mut(token) {
                Some(child) => child,
                None => return,
            },
            Value::Array(items) => match index(token, items.len()) {
                Some(i) if i < items.len() => &mut items[i],
                _ => return,
            },
            _ => return,
        };
    }
    match node {
        Value::Object(map) => {
            map.remove(last);
        }
        Value::Array(items) => {
            if let Some(i) = index(last, items.len()).filter(|&i| i < items.len()) {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// An RFC 6901 array index: `-` (one past the end) or decimal digits
/// without a leading zero.
fn index(token: &str, len: usize) -> Option<usize> {
    if token == "-" {
        return Some(len);
    }
    let canonical = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    canonical.then(|| token.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(text: &str) -> Pointer {
        Pointer::parse(text).unwrap()
    }

    #[test]
    fn parse_unescapes_and_bounds() {
        assert_eq!(p("/a~1b/~0c").tokens, ["a/b", "~c"]);
        assert!(Pointer::parse("").is_err());
        assert!(Pointer::parse("a").is_err());
        assert!(Pointer::parse(&"/x".repeat(MAX_DEPTH + 1)).is_err());
        assert!(Pointer::parse(&"/x".repeat(MAX_DEPTH)).is_ok());
    }

    #[test]
    fn set_creates_parents_and_handles_arrays() {
        let mut doc = json!({ "items": [1, 2] });
        set(&mut doc, &p("/meta/source"), json!("gw")).unwrap();
        set(&mut doc, &p("/items/0"), json!(9)).unwrap();
        set(&mut doc, &p("/items/-"), json!(3)).unwrap();
        set(&mut doc, &p("/items/3"), json!(4)).unwrap();
        assert_eq!(
            doc,
            json!({ "items": [9, 2, 3, 4], "meta": { "source": "gw" } })
        );
        assert!(set(&mut doc, &p("/items/9"), json!(0)).is_err());
        assert!(set(&mut doc, &p("/items/01"), json!(0)).is_err());
        assert!(set(&mut doc, &p("/meta/source/x"), json!(0)).is_err());
    }

    #[test]
    fn remove_ignores_absent_paths() {
        let mut doc = json!({ "a": { "b": 1, "c": [1, 2, 3] } });
        remove(&mut doc, &p("/a/b"));
        remove(&mut doc, &p("/a/c/1"));
        remove(&mut doc, &p("/a/zz/1"));
        remove(&mut doc, &p("/a/c/7"));
        assert_eq!(doc, json!({ "a": { "c": [1, 3] } }));
    }
}
