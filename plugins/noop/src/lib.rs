//! `noop`: a plugin that implements every phase and does nothing in any of
//! them. The gateway still crosses into Wasm for each phase, so the
//! difference between a route with `noop` and one without is the fixed cost
//! of running a plugin (the benchmark's overhead figure).

use weir_sdk::{Action, BodyAction, Plugin, Request, Response};

/// The do-nothing plugin; it accepts and ignores any configuration.
pub struct Noop;

impl Plugin for Noop {
    type Config = serde::de::IgnoredAny;

    fn new(_config: Self::Config) -> Result<Self, String> {
        Ok(Noop)
    }

    // The phases are spelled out (rather than left to the SDK's defaults) so
    // that this plugin documents the full set the benchmark crosses.
    fn on_request(&mut self, _req: &mut Request<'_>) -> Action {
        Action::Continue
    }

    fn on_request_body(&mut self, _req: &mut Request<'_>, _body: Vec<u8>) -> BodyAction {
        BodyAction::Continue
    }

    fn on_response(&mut self, _req: &Request<'_>, _resp: &mut Response<'_>) {}

    fn on_response_body(
        &mut self,
        _req: &Request<'_>,
        _resp: &mut Response<'_>,
        _body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        None
    }

    fn on_log(&mut self, _req: &Request<'_>, _status: u16) {}
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
        assert_eq!(
            exchange.phases(),
            [Phase::Request, Phase::Response, Phase::Log]
        );
        assert!(host.logs().is_empty());
    }
}
