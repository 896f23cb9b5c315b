//! The gateway's bounds on what a plugin keeps and writes through the host
//! services, on the calls it makes and on its fleet operations. They sit
//! below both the services, which re-export them where plugins look for
//! them ([`calls`](crate::calls), [`context`](crate::context),
//! [`fleet`](crate::fleet), [`log`](crate::log),
//! [`metrics`](crate::metrics), [`random`](crate::random),
//! [`state`](crate::state)), and the native test host, which enforces them.
//! The bounds on headers and targets live in [`validate`](crate::validate),
//! beside the checks that apply them. Each equals the gateway's own: a unit
//! test of the gateway (`the_sdk_states_the_gateways_bounds`) compares them.

/// Request context.
pub mod context {
    /// The most context entries one plugin keeps per request; setting a new
    /// key past it is dropped, and the gateway logs a warning.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::context::MAX_ENTRIES, 32);
    /// ```
    pub const MAX_ENTRIES: usize = 32;

    /// The longest context key, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::context::MAX_KEY_BYTES, 256);
    /// ```
    pub const MAX_KEY_BYTES: usize = 256;

    /// The longest context value, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::context::{get, set, MAX_VALUE_BYTES};
    /// set("big", &"v".repeat(MAX_VALUE_BYTES + 1));
    /// assert_eq!(get("big"), None);
    /// ```
    pub const MAX_VALUE_BYTES: usize = 4 * 1024;
}

/// Logging.
pub mod log {
    /// The longest message the gateway logs, in bytes; a longer one is cut
    /// (on a character boundary) and ends with ` [cut]`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::log::MAX_MESSAGE_BYTES, 4 * 1024);
    /// ```
    pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;

    /// The most log lines one phase call writes. The line that would reach
    /// it is replaced by the host's warning that the call's further lines
    /// are dropped.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::log::MAX_LINES_PER_CALL, 32);
    /// ```
    pub const MAX_LINES_PER_CALL: usize = 32;

    /// How the SDK's panic hook starts the error line it sends when a
    /// plugin panics. The gateway keeps a line that starts so for the
    /// call's failure report (`trapped: panicked at src/lib.rs:42:5: …`)
    /// instead of logging it on its own; it is not counted against
    /// [`MAX_LINES_PER_CALL`].
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::log::PANIC_PREFIX, "plugin panic: ");
    /// ```
    pub const PANIC_PREFIX: &str = "plugin panic: ";

    /// The longest panic report (`panicked at FILE:LINE:COLUMN: MESSAGE`,
    /// after [`PANIC_PREFIX`]), in bytes: a longer one is cut, by the
    /// SDK's hook and again by the gateway. Short enough for one log line
    /// and the failure line that quotes it.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::log::MAX_PANIC_BYTES, 1024);
    /// ```
    pub const MAX_PANIC_BYTES: usize = 1024;

    /// The most access-log fields one request carries
    /// ([`set_field`](crate::log::set_field)), all plugins of its chain
    /// together: a new name past it is refused (replacing a value is not
    /// a new field).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::log::MAX_FIELDS, 16);
    /// ```
    pub const MAX_FIELDS: usize = 16;

    /// The longest access-log field name, in bytes (at least 1; `a-z`,
    /// `0-9`, `_`, `.` and `-`, starting with a letter).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::validate::log_field;
    /// assert!(log_field(&"n".repeat(weir_sdk::log::MAX_FIELD_NAME_BYTES + 1), "v").is_err());
    /// ```
    pub const MAX_FIELD_NAME_BYTES: usize = 64;

    /// The longest access-log field value, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::validate::log_field;
    /// assert!(log_field("consumer", &"v".repeat(weir_sdk::log::MAX_FIELD_VALUE_BYTES + 1)).is_err());
    /// ```
    pub const MAX_FIELD_VALUE_BYTES: usize = 512;
}

/// Metrics counters.
pub mod metrics {
    /// The longest counter name, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::metrics::MAX_NAME_BYTES, 64);
    /// ```
    pub const MAX_NAME_BYTES: usize = 64;

    /// The most counters one plugin may have.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::metrics::MAX_COUNTERS, 1_000);
    /// ```
    pub const MAX_COUNTERS: usize = 1_000;
}

/// Random bytes.
pub mod random {
    /// The most bytes the host hands out per call.
    ///
    /// # Example
    ///
    /// ```
    /// // `bytes` splits larger requests into several host calls.
    /// assert_eq!(weir_sdk::random::bytes(weir_sdk::random::MAX_BYTES + 1).len(), 1025);
    /// ```
    pub const MAX_BYTES: usize = 1024;
}

/// Shared state.
pub mod state {
    use std::time::Duration;

    /// The longest key, in bytes (keys are at least 1 byte).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::state::{set, MAX_KEY_BYTES};
    /// assert!(set(&"k".repeat(MAX_KEY_BYTES + 1), b"v", None).is_err());
    /// ```
    pub const MAX_KEY_BYTES: usize = 256;

    /// The longest value, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::state::{set, MAX_VALUE_BYTES};
    /// assert!(set("k", &vec![0; MAX_VALUE_BYTES + 1], None).is_err());
    /// ```
    pub const MAX_VALUE_BYTES: usize = 64 * 1024;

    /// The most keys one plugin holds at once.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::state::MAX_KEYS, 10_000);
    /// ```
    pub const MAX_KEYS: usize = 10_000;

    /// The most bytes of keys and values one plugin holds at once.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::state::MAX_BYTES, 16 * 1024 * 1024);
    /// ```
    pub const MAX_BYTES: usize = 16 * 1024 * 1024;

    /// When a write finds the plugin full, expired keys are swept first, at
    /// most once per this interval per plugin; in between, writes that do
    /// not fit are refused.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::state::SWEEP_INTERVAL.as_millis(), 100);
    /// ```
    pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

    /// The largest bucket capacity and refill rate (tokens per second).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::state::{take_tokens, Bucket, MAX_BUCKET};
    /// let too_big = Bucket { capacity: MAX_BUCKET + 1, refill_per_second: 1 };
    /// assert!(take_tokens("k", too_big, 1).is_err());
    /// ```
    pub const MAX_BUCKET: u64 = 1_000_000_000;
}

/// Outbound calls: the fixed bounds on one call, and the gateway's
/// per-plugin settings (`[plugin_limits.NAME]`) with their defaults and
/// the range the configuration accepts.
pub mod calls {
    use std::time::Duration;

    /// The longest tag a call carries, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, MAX_CALL_TAG_BYTES};
    /// assert!(Call::get("auth", "/").tag("t".repeat(MAX_CALL_TAG_BYTES)).check().is_ok());
    /// assert!(Call::get("auth", "/").tag("t".repeat(MAX_CALL_TAG_BYTES + 1)).check().is_err());
    /// ```
    pub const MAX_CALL_TAG_BYTES: usize = 256;

    /// The most header fields a call sends (a repeated name counts once
    /// per value).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, MAX_CALL_HEADER_FIELDS};
    /// let call = (0..=MAX_CALL_HEADER_FIELDS).fold(Call::get("auth", "/"), |c, _| c.header("x-a", "1"));
    /// assert!(call.check().is_err());
    /// ```
    pub const MAX_CALL_HEADER_FIELDS: usize = 64;

    /// The most bytes of header names and values a call sends, all its
    /// fields together.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, MAX_CALL_HEADER_BYTES};
    /// let call = Call::get("auth", "/").header("x-a", "v".repeat(MAX_CALL_HEADER_BYTES - 3));
    /// assert!(call.check().is_ok());
    /// assert!(call.header("x", "").check().is_err());
    /// ```
    pub const MAX_CALL_HEADER_BYTES: usize = 16 * 1024;

    /// The longest path (with its query) a call sends, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::calls::{Call, MAX_CALL_PATH_BYTES};
    /// let long = format!("/{}", "p".repeat(MAX_CALL_PATH_BYTES));
    /// assert!(Call::get("auth", long).check().is_err());
    /// ```
    pub const MAX_CALL_PATH_BYTES: usize = 8 * 1024;

    /// `max_calls_per_request` when the configuration does not set it: the
    /// calls one plugin may start while serving one request, background
    /// calls included.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::calls::DEFAULT_MAX_CALLS_PER_REQUEST, 4);
    /// ```
    pub const DEFAULT_MAX_CALLS_PER_REQUEST: usize = 4;

    /// The highest `max_calls_per_request` the configuration accepts (the
    /// lowest is 1).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::calls::MAX_CALLS_PER_REQUEST, 64);
    /// ```
    pub const MAX_CALLS_PER_REQUEST: usize = 64;

    /// `max_calls_in_flight` when the configuration does not set it: the
    /// calls of one plugin under way at once, over every request the
    /// gateway serves.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::calls::DEFAULT_MAX_CALLS_IN_FLIGHT, 256);
    /// ```
    pub const DEFAULT_MAX_CALLS_IN_FLIGHT: usize = 256;

    /// The highest `max_calls_in_flight` the configuration accepts (the
    /// lowest is 1).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::calls::MAX_CALLS_IN_FLIGHT, 65_536);
    /// ```
    pub const MAX_CALLS_IN_FLIGHT: usize = 65_536;

    /// `max_call_body_bytes` when the configuration does not set it: the
    /// largest body a call sends, and the largest answer body it receives
    /// (a larger answer is [`CallError::TooLarge`](crate::calls::CallError::TooLarge)).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::calls::DEFAULT_MAX_CALL_BODY_BYTES, 256 * 1024);
    /// ```
    pub const DEFAULT_MAX_CALL_BODY_BYTES: usize = 256 * 1024;

    /// The highest `max_call_body_bytes` the configuration accepts (the
    /// lowest is 1).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::calls::MAX_CALL_BODY_BYTES, 16 * 1024 * 1024);
    /// ```
    pub const MAX_CALL_BODY_BYTES: usize = 16 * 1024 * 1024;

    /// `call_timeout` when the configuration does not set it: the longest a
    /// call may take, whatever time limit it asks for.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::calls::DEFAULT_CALL_TIMEOUT.as_secs(), 1);
    /// ```
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(1);

    /// The shortest `call_timeout` the configuration accepts.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::calls::MIN_CALL_TIMEOUT.as_millis(), 1);
    /// ```
    pub const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(1);

    /// The longest `call_timeout` the configuration accepts.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::calls::MAX_CALL_TIMEOUT.as_secs(), 60);
    /// ```
    pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(60);
}

/// Fleet-wide counters and token buckets: the bounds on one operation and
/// on the operations one phase call may leave waiting.
pub mod fleet {
    /// The longest fleet key, in bytes (keys are at least 1 byte).
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::fleet::{Increment, MAX_FLEET_KEY_BYTES};
    /// assert!(Increment::new("k".repeat(MAX_FLEET_KEY_BYTES), 1).check().is_ok());
    /// assert!(Increment::new("k".repeat(MAX_FLEET_KEY_BYTES + 1), 1).check().is_err());
    /// assert!(Increment::new("", 1).check().is_err());
    /// ```
    pub const MAX_FLEET_KEY_BYTES: usize = 256;

    /// The largest bucket capacity and refill rate (tokens per second) of
    /// a fleet bucket; a capacity is at least 1.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::fleet::{Bucket, Take, MAX_FLEET_BUCKET};
    /// let largest = Bucket { capacity: MAX_FLEET_BUCKET, refill_per_second: MAX_FLEET_BUCKET };
    /// assert!(Take::new("k", largest, 1).check().is_ok());
    /// let too_big = Bucket { capacity: MAX_FLEET_BUCKET + 1, refill_per_second: 1 };
    /// assert!(Take::new("k", too_big, 1).check().is_err());
    /// ```
    pub const MAX_FLEET_BUCKET: u64 = 1_000_000_000;

    /// The longest tag a fleet operation carries, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use weir_sdk::fleet::{Increment, MAX_FLEET_TAG_BYTES};
    /// assert!(Increment::new("k", 1).tag("t".repeat(MAX_FLEET_TAG_BYTES)).check().is_ok());
    /// assert!(Increment::new("k", 1).tag("t".repeat(MAX_FLEET_TAG_BYTES + 1)).check().is_err());
    /// ```
    pub const MAX_FLEET_TAG_BYTES: usize = 256;

    /// The most fleet operations one phase call may start that wait
    /// ([`Started::Pending`](crate::fleet::Started::Pending)); the next one
    /// is refused with [`FleetError::Limit`](crate::fleet::FleetError::Limit).
    /// Operations answered at once do not count.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(weir_sdk::fleet::MAX_FLEET_PENDING_PER_CALL, 16);
    /// ```
    pub const MAX_FLEET_PENDING_PER_CALL: usize = 16;
}
