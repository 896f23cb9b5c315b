//! `header-rewrite`: sets one request header and removes another before the
//! request is forwarded. The smallest plugin that does real work through
//! the host (one write, one delete), used by the benchmark next to `noop`.

use serde::Deserialize;
use weir_sdk::{Action, Phases, Plugin, Request, validate};

/// Configuration; every field has a default so the benchmark can use the
/// plugin without a `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The header to set (replacing any values).
    pub set_name: String,
    /// Its value.
    pub set_value: String,
    /// The header to remove.
    pub remove: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            set_name: "x-weir-plugin".to_owned(),
            set_value: "header-rewrite".to_owned(),
            remove: "x-remove-me".to_owned(),
        }
    }
}

/// Sets `set_name: set_value` and removes `remove` on every request.
pub struct HeaderRewrite {
    config: Config,
}

impl Plugin for HeaderRewrite {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        validate::header_name(&config.set_name).map_err(|e| format!("set_name: {e}"))?;
        validate::header_value(&config.set_name, &config.set_value)
            .map_err(|e| format!("set_value: {e}"))?;
        validate::header_name(&config.remove).map_err(|e| format!("remove: {e}"))?;
        Ok(Self { config })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        // Both were validated in `new`, so the host cannot refuse the write.
        let _ = req.set_header(&self.config.set_name, &self.config.set_value);
        req.remove_header(&self.config.remove);
        Action::Continue
    }
}

weir_sdk::export!(HeaderRewrite);

#[cfg(test)]
mod tests {
    use super::HeaderRewrite;
    use serde_json::json;
    use weir_sdk::testing::{TestHost, TestRequest};

    #[test]
    fn defaults_set_one_header_and_remove_another() {
        let mut host = TestHost::<HeaderRewrite>::from_json("").unwrap();
        let exchange = host.run(
            TestRequest::get("/")
                .header("x-weir-plugin", "client-value")
                .header("x-remove-me", "secret")
                .header("x-keep", "1"),
        );
        let upstream = exchange.upstream_request().unwrap();
        assert_eq!(upstream.header_all("x-weir-plugin"), ["header-rewrite"]);
        assert_eq!(upstream.header("x-remove-me"), None);
        assert_eq!(upstream.header("x-keep"), Some("1"));
    }

    #[test]
    fn configured_names_are_used() {
        let mut host = TestHost::<HeaderRewrite>::new(
            json!({ "set_name": "x-env", "set_value": "prod", "remove": "cookie" }),
        )
        .unwrap();
        let exchange = host.run(TestRequest::get("/").header("cookie", "a=1"));
        let upstream = exchange.upstream_request().unwrap();
        assert_eq!(upstream.header("x-env"), Some("prod"));
        assert_eq!(upstream.header("cookie"), None);
    }

    #[test]
    fn invalid_configuration_is_refused() {
        let err = TestHost::<HeaderRewrite>::new(json!({ "set_name": "bad name" }))
            .err()
            .unwrap();
        assert!(err.contains("set_name"), "{err}");
        let err = TestHost::<HeaderRewrite>::new(json!({ "set_value": "a\nb" }))
            .err()
            .unwrap();
        assert!(err.contains("set_value"), "{err}");
        let err = TestHost::<HeaderRewrite>::new(json!({ "rmove": "x" }))
            .err()
            .unwrap();
        assert!(err.contains("unknown field"), "{err}");
    }
}
