//! `transform`: declarative rewrites of a request on its way upstream and of
//! the response on its way back. Header rules (remove, rename, set, add, in
//! that order) for requests and responses; a regex path rewrite; and set or
//! remove of fields in a JSON request body, addressed by JSON pointers
//! (RFC 6901). The body rules are the only ones that need the request-body
//! phase, so the plugin asks for it only when they are configured.
//!
//! This module owns the plugin's phases; the rule types and their
//! validation live in [`rules`], the JSON pointer edits in [`json`].

pub mod json;
pub mod rules;

use weir_sdk::{Action, BodyAction, Phases, Plugin, Request, Response, ResponseAction};

pub use rules::Config;
use rules::{BodyRules, HeaderRules, PathRewrite};

/// The plugin: validated rules.
pub struct Transform {
    request_headers: HeaderRules,
    response_headers: HeaderRules,
    path: Option<PathRewrite>,
    body: Option<BodyRules>,
}

impl Plugin for Transform {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        Ok(Self {
            request_headers: HeaderRules::new("request_headers", config.request_headers)?,
            response_headers: HeaderRules::new("response_headers", config.response_headers)?,
            path: config.path.map(PathRewrite::new).transpose()?,
            body: config.json_body.map(BodyRules::new).transpose()?,
        })
    }

    /// Only the phases some configured rule needs: a response-headers-only
    /// transform is never called in the request phase, and the reverse;
    /// the request body is buffered only for body rules.
    fn phases(&self) -> Phases {
        let mut phases = Phases::NONE;
        if self.path.is_some() || !self.request_headers.is_empty() {
            phases |= Phases::REQUEST;
        }
        if self.body.is_some() {
            phases |= Phases::REQUEST_BODY;
        }
        if !self.response_headers.is_empty() {
            phases |= Phases::RESPONSE;
        }
        phases
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        if let Some(rewrite) = &self.path {
            let path = req.path();
            let rewritten = rewrite.apply(&path);
            if rewritten != path
                && let Err(e) = req.set_path(&rewritten)
            {
                // A replacement template can build an invalid path from a
                // client's input; refuse rather than forward garbage.
                weir_sdk::log::warn(&format!("path rewrite of {path:?} refused: {e}"));
                return Action::respond(400).body("invalid rewritten path").into();
            }
        }
        self.request_headers.apply(req);
        Action::Continue
    }

    fn on_request_body(&mut self, _req: &mut Request<'_>, body: Vec<u8>) -> BodyAction {
        let Some(rules) = &self.body else {
            return BodyAction::Continue;
        };
        if body.is_empty() {
            return BodyAction::Continue;
        }
        match rules.apply(&body) {
            Ok(new_body) => BodyAction::Replace(new_body),
            Err(reason) => Action::respond(400)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "error": reason }).to_string())
                .into(),
        }
    }

    fn on_response(&mut self, _req: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
        self.response_headers.apply(resp);
        ResponseAction::Continue
    }
}

weir_sdk::export!(Transform);

#[cfg(test)]
mod tests;
