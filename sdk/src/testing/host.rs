//! [`TestHost`]: one plugin instance on the in-memory host, made from its
//! configuration as the gateway makes it, with the host's clock, random
//! generator, logs, shared state and counters for a test to set and read.
//! Playing a request through it is [`TestHost::run`]'s, in `run.rs`; the
//! calls the plugin makes are set up and sent in `calls.rs`, against the
//! scripts of `script.rs`, and its fleet operations' mode is set in
//! `fleet.rs`.

use std::rc::Rc;
use std::time::Duration;

use super::script::Scripts;
use crate::backend::native::LogLine;
use crate::backend::{Env, LogWindow, install};
use crate::phases::Phases;
use crate::plugin::{Plugin, instantiate};

/// One plugin instance running on the in-memory host.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use weir_sdk::testing::{TestHost, TestRequest};
/// # struct Noop;
/// # impl weir_sdk::Plugin for Noop {
/// #     type Config = serde::de::IgnoredAny;
/// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
/// # }
///
/// let mut host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
/// host.advance(Duration::from_secs(5));
/// assert_eq!(host.now_ms(), 1_700_000_005_000);
/// assert_eq!(host.run(TestRequest::get("/")).status(), 200);
/// ```
pub struct TestHost<P: Plugin> {
    pub(super) plugin: P,
    pub(super) phases: Phases,
    pub(super) env: Rc<Env>,
    /// How the upstreams the plugin calls answer.
    pub(super) scripts: Scripts,
}

impl<P: Plugin> TestHost<P> {
    /// Creates an instance from a JSON configuration value, exactly as the
    /// gateway does from a route's `config` table; the error is the message
    /// the gateway would refuse the deployment with.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// #[derive(serde::Deserialize)]
    /// #[serde(deny_unknown_fields)]
    /// struct Config { limit: u32 }
    /// struct Limited;
    /// impl weir_sdk::Plugin for Limited {
    ///     type Config = Config;
    ///     fn new(c: Config) -> Result<Self, String> {
    ///         if c.limit == 0 { return Err("limit must be positive".into()) }
    ///         Ok(Limited)
    ///     }
    /// }
    /// assert!(TestHost::<Limited>::new(serde_json::json!({ "limit": 1 })).is_ok());
    /// assert!(TestHost::<Limited>::new(serde_json::json!({ "limit": 0 })).is_err());
    /// assert!(TestHost::<Limited>::new(serde_json::json!({ "limmit": 1 })).is_err());
    /// ```
    pub fn new(config: serde_json::Value) -> Result<Self, String> {
        Self::from_json(&config.to_string())
    }

    /// Creates an instance from JSON configuration text (empty text reads as
    /// `{}`, as for a route without a `config` table).
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// assert!(TestHost::<Noop>::from_json("").is_ok());
    /// ```
    pub fn from_json(config: &str) -> Result<Self, String> {
        crate::panic::install();
        let env = Rc::new(Env::new());
        // `new` is the gateway's `init`: no request, no access-log line,
        // no calls.
        env.log_window.set(LogWindow::NoRequest);
        env.calls.borrow_mut().open = false;
        let _current = install(&env);
        let plugin = instantiate::<P>(config)?;
        let phases = plugin.phases();
        Ok(Self {
            plugin,
            phases,
            env,
            scripts: Scripts::default(),
        })
    }

    /// The plugin instance.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// let _noop: &Noop = host.plugin();
    /// ```
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// The phases the plugin asked for ([`Plugin::phases`]):
    /// [`TestHost::run`] calls no other, as the gateway does not.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// assert_eq!(host.phases(), weir_sdk::Phases::DEFAULT);
    /// ```
    pub fn phases(&self) -> Phases {
        self.phases
    }

    /// The clock, in milliseconds since the Unix epoch (starts at
    /// 1 700 000 000 000, i.e. 2023-11-14T22:13:20Z).
    ///
    /// # Example
    ///
    /// See [`TestHost`].
    pub fn now_ms(&self) -> u64 {
        self.env.now_ms.get()
    }

    /// Sets the clock.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// host.set_now_ms(42);
    /// assert_eq!(host.now_ms(), 42);
    /// ```
    pub fn set_now_ms(&self, now_ms: u64) {
        self.env.now_ms.set(now_ms);
    }

    /// Moves the clock forward.
    ///
    /// # Example
    ///
    /// See [`TestHost`].
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.env
            .now_ms
            .set(self.env.now_ms.get().saturating_add(by));
    }

    /// Seeds the deterministic generator behind [`crate::random`].
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// host.seed_random(7);
    /// ```
    pub fn seed_random(&self, seed: u64) {
        self.env.seed_random(seed);
    }

    /// Every line the plugin logged so far.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// struct Chatty;
    /// impl weir_sdk::Plugin for Chatty {
    ///     type Config = serde::de::IgnoredAny;
    ///     fn new(_: Self::Config) -> Result<Self, String> {
    ///         weir_sdk::log::info("ready");
    ///         Ok(Chatty)
    ///     }
    /// }
    /// let host = TestHost::<Chatty>::new(serde_json::json!({})).unwrap();
    /// assert_eq!(host.logs()[0].message, "ready");
    /// ```
    pub fn logs(&self) -> Vec<LogLine> {
        self.env.logs.borrow().clone()
    }

    /// A shared-state value, as the plugin left it.
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// host.set_state("k", b"v");
    /// assert_eq!(host.state("k").as_deref(), Some(&b"v"[..]));
    /// ```
    pub fn state(&self, key: &str) -> Option<Vec<u8>> {
        self.env.with_store(|store, now| store.get(key, now))
    }

    /// Seeds a shared-state value (no expiry).
    ///
    /// # Example
    ///
    /// See [`TestHost::state`].
    ///
    /// # Panics
    ///
    /// If the gateway would refuse the write (key or value over its bound,
    /// or no room left): the test's set-up is wrong.
    pub fn set_state(&self, key: &str, value: &[u8]) {
        (self
            .env
            .with_store(|store, now| store.set(key, value, None, now)))
        .unwrap_or_else(|e| panic!("set_state({key:?}): {}", String::from(e)));
    }

    /// A metrics counter's value (0 if never added to).
    ///
    /// # Example
    ///
    /// ```
    /// # use weir_sdk::testing::TestHost;
    /// # struct Noop;
    /// # impl weir_sdk::Plugin for Noop {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     fn new(_: Self::Config) -> Result<Self, String> { Ok(Noop) }
    /// # }
    /// let host = TestHost::<Noop>::new(serde_json::json!({})).unwrap();
    /// assert_eq!(host.counter("anything"), 0);
    /// ```
    pub fn counter(&self, name: &str) -> u64 {
        self.env.counters.borrow().get(name).copied().unwrap_or(0)
    }
}
