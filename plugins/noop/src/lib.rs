//! `noop`: a plugin that runs on every request and does nothing. It
//! declares only the request phase (see `weir_sdk::Phases`), so the
//! difference between a route with `noop` and one without is the fixed
//! cost of a plugin that the gateway calls once per request (the
//! benchmark's overhead figure). Each further phase a plugin declares adds
//! one more call into Wasm per request.

use weir_sdk::{Action, Phases, Plugin, Request};

/// The do-nothing plugin; it accepts and ignores any configuration.
pub struct Noop;

impl Plugin for Noop {
    type Config = serde::de::IgnoredAny;

    fn new(_config: Self::Config) -> Result<Self, String> {
        Ok(Noop)
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request(&mut self, _req: &mut Request<'_>) -> Action {
        Action::Continue
    }
}

weir_sdk::export!(Noop);

#[cfg(test)]
mod tests {
    use super::Noop;
    use weir_sdk::testing::{Phase, TestHost, TestRequest, TestResponse};

    #[test]
    fn passes_request_and_response_through_unchanged() {
        let mut host = TestHost::<Noop>::new(serde_json::json!({ "anything": 1 })).unwrap();
        let exchange = host.run(
            TestRequest::post("/p?q=1")
                .header("x-a", "1")
                .body("body")
                .upstream(TestResponse::new(418).header("x-b", "2").body("tea")),
        );
        let upstream = exchange.upstream_request().unwrap();
        assert_eq!(upstream.path(), "/p");
        assert_eq!(upstream.query(), Some("q=1"));
        assert_eq!(upstream.header("x-a"), Some("1"));
        assert_eq!(upstream.body(), b"body");
        assert_eq!(exchange.status(), 418);
        assert_eq!(exchange.header("x-b"), Some("2"));
        assert_eq!(exchange.body(), b"tea");
        assert_eq!(exchange.routed_to(), None);
        assert_eq!(exchange.phases(), [Phase::Request]);
        assert!(host.logs().is_empty());
    }
}
