//! [`Phases`]: the set of phases a plugin asks the host to run, one flag
//! per phase, as the contract's `capabilities` flags name them. Plain data:
//! the Wasm export turns it into those flags, and the test host reads it as
//! the gateway does.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// The phases a plugin asks the host to run, returned by
/// [`Plugin::phases`](crate::Plugin::phases); the host calls no other.
///
/// Each phase left out saves the gateway a call into WebAssembly on every
/// request. A body phase costs more: the gateway buffers the body (up to
/// the route's cap) to hand it over, so the body phases run only when
/// asked for. A phase that is implemented but not asked for never runs, in
/// the gateway as in the test host (`weir_sdk::testing`), so a plugin's own
/// tests catch the omission.
///
/// # Example
///
/// ```
/// use weir_sdk::Phases;
///
/// let phases = Phases::REQUEST | Phases::REQUEST_BODY;
/// assert!(phases.contains(Phases::REQUEST_BODY));
/// assert!(!phases.contains(Phases::RESPONSE));
/// assert_eq!(Phases::default(), Phases::REQUEST | Phases::RESPONSE | Phases::LOG);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Phases(u8);

impl Phases {
    /// No phase: the plugin is never called after `new`.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!weir_sdk::Phases::NONE.contains(weir_sdk::Phases::LOG));
    /// ```
    pub const NONE: Self = Self(0);
    /// [`Plugin::on_request`](crate::Plugin::on_request).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Phases;
    /// assert!(!Phases::REQUEST.contains(Phases::REQUEST_BODY));
    /// ```
    pub const REQUEST: Self = Self(1);
    /// [`Plugin::on_request_body`](crate::Plugin::on_request_body), with
    /// the request body buffered.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Phases;
    /// assert!(!Phases::REQUEST_BODY.contains(Phases::REQUEST));
    /// ```
    pub const REQUEST_BODY: Self = Self(1 << 1);
    /// [`Plugin::on_response`](crate::Plugin::on_response).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Phases;
    /// assert!(Phases::DEFAULT.contains(Phases::RESPONSE));
    /// ```
    pub const RESPONSE: Self = Self(1 << 2);
    /// [`Plugin::on_response_body`](crate::Plugin::on_response_body), with
    /// the response body buffered.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Phases;
    /// assert!(!Phases::DEFAULT.contains(Phases::RESPONSE_BODY));
    /// ```
    pub const RESPONSE_BODY: Self = Self(1 << 3);
    /// [`Plugin::on_log`](crate::Plugin::on_log).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Phases;
    /// assert!(Phases::DEFAULT.contains(Phases::LOG));
    /// ```
    pub const LOG: Self = Self(1 << 4);
    /// The request, response and log phases, not the body phases: what a
    /// plugin that does not implement [`Plugin::phases`](crate::Plugin::phases)
    /// gets, and [`Phases::default`].
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Phases;
    /// assert_eq!(Phases::DEFAULT, Phases::REQUEST | Phases::RESPONSE | Phases::LOG);
    /// ```
    pub const DEFAULT: Self = Self(Self::REQUEST.0 | Self::RESPONSE.0 | Self::LOG.0);
    /// Every phase, the body phases included.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Phases;
    /// assert_eq!(Phases::ALL, Phases::DEFAULT | Phases::REQUEST_BODY | Phases::RESPONSE_BODY);
    /// ```
    pub const ALL: Self = Self(Self::DEFAULT.0 | Self::REQUEST_BODY.0 | Self::RESPONSE_BODY.0);

    /// Whether every phase of `other` is in `self`.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::Phases;
    /// assert!(Phases::ALL.contains(Phases::REQUEST | Phases::LOG));
    /// assert!(!Phases::REQUEST.contains(Phases::REQUEST | Phases::LOG));
    /// ```
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl Default for Phases {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl BitOr for Phases {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for Phases {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// Names the phases, e.g. `Phases(REQUEST | LOG)`.
impl fmt::Debug for Phases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Phases, &str); 5] = [
            (Phases::REQUEST, "REQUEST"),
            (Phases::REQUEST_BODY, "REQUEST_BODY"),
            (Phases::RESPONSE, "RESPONSE"),
            (Phases::RESPONSE_BODY, "RESPONSE_BODY"),
            (Phases::LOG, "LOG"),
        ];
        let mut names = NAMES.iter().filter(|(phase, _)| self.contains(*phase));
        f.write_str("Phases(")?;
        match names.next() {
            None => f.write_str("NONE")?,
            Some((_, first)) => {
                f.write_str(first)?;
                for (_, name) in names {
                    write!(f, " | {name}")?;
                }
            }
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::Phases;

    #[test]
    fn debug_names_the_phases() {
        assert_eq!(format!("{:?}", Phases::NONE), "Phases(NONE)");
        assert_eq!(
            format!("{:?}", Phases::LOG | Phases::REQUEST),
            "Phases(REQUEST | LOG)"
        );
    }
}
