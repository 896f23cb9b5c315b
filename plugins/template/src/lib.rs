//! A template plugin: refuses requests that lack a required header and
//! tags forwarded requests and their responses. Replace the body of each
//! phase with your own logic; delete the phases you do not need (each has a
//! no-op default).

use serde::Deserialize;
use weir_sdk::{Action, Phases, Plugin, Request, Response, ResponseAction, validate};

/// The plugin's configuration: the route's `config` table, as JSON.
/// `deny_unknown_fields` turns a typo into a deploy-time error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A header every request must carry.
    pub required_header: String,
    /// The value of the `x-template` header added to forwarded requests.
    #[serde(default = "default_tag")]
    pub tag: String,
}

fn default_tag() -> String {
    "hello".to_owned()
}

/// One instance; the gateway creates several and reuses them.
pub struct Template {
    required_header: String,
    tag: String,
}

impl Plugin for Template {
    type Config = Config;

    /// Check everything about the configuration here: an `Err` stops the
    /// deployment with this message.
    fn new(config: Config) -> Result<Self, String> {
        validate::header_name(&config.required_header)
            .map_err(|e| format!("required_header: {e}"))?;
        validate::header_value("x-template", &config.tag).map_err(|e| format!("tag: {e}"))?;
        weir_sdk::log::info(&format!("requiring header {}", config.required_header));
        Ok(Self {
            required_header: config.required_header,
            tag: config.tag,
        })
    }

    /// Name every phase implemented below: the gateway calls no other,
    /// and each one named costs a call per request.
    fn phases(&self) -> Phases {
        Phases::REQUEST | Phases::RESPONSE
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        if req.header(&self.required_header).is_none() {
            return Action::respond(400)
                .header("content-type", "text/plain")
                .body(format!("missing header {}", self.required_header))
                .into();
        }
        if let Err(e) = req.set_header("x-template", &self.tag) {
            weir_sdk::log::error(&e);
        }
        // Hand a value to the response phase of the same request.
        weir_sdk::context::set("path", &req.path());
        Action::Continue
    }

    fn on_response(&mut self, _req: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
        if let Some(path) = weir_sdk::context::get("path") {
            let _ = resp.set_header("x-template-path", &path);
        }
        ResponseAction::Continue
    }
}

// Wires `Template` to the component's exports (on wasm32-wasip2 only).
weir_sdk::export!(Template);

#[cfg(test)]
mod tests {
    use super::Template;
    use serde_json::json;
    use weir_sdk::testing::{TestHost, TestRequest};

    fn host() -> TestHost<Template> {
        TestHost::new(json!({ "required_header": "x-team" })).unwrap()
    }

    #[test]
    fn requests_without_the_header_are_refused() {
        let exchange = host().run(TestRequest::get("/"));
        assert_eq!(exchange.status(), 400);
        assert_eq!(exchange.body_text(), "missing header x-team");
        assert!(exchange.upstream_request().is_none());
    }

    #[test]
    fn requests_with_the_header_are_tagged_both_ways() {
        let exchange = host().run(TestRequest::get("/orders").header("x-team", "blue"));
        assert_eq!(exchange.status(), 200);
        let upstream = exchange.upstream_request().unwrap();
        assert_eq!(upstream.header("x-template"), Some("hello"));
        assert_eq!(exchange.header("x-template-path"), Some("/orders"));
    }

    #[test]
    fn bad_configuration_is_refused() {
        let err = TestHost::<Template>::new(json!({ "required_header": "x team" }))
            .err()
            .unwrap();
        assert!(err.starts_with("required_header:"), "{err}");
        assert!(TestHost::<Template>::new(json!({})).is_err());
    }

    #[test]
    fn new_logs_its_configuration() {
        let host = host();
        assert_eq!(host.logs()[0].message, "requiring header x-team");
    }
}
