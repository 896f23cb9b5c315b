//! `canary`: sends some requests to a canary upstream instead of the
//! route's own. A request goes to the canary when it carries an opt-in
//! header value; otherwise a client keeps the decision its cookie records;
//! otherwise a random draw sends `percent` of new clients to the canary.
//! A fresh draw is remembered by setting the cookie in `on_response`, with
//! the decision carried there through the request context.
//!
//! The cookie only ever holds `canary` or `stable`; any other value is
//! ignored and the client drawn again, so a tampered cookie can do no more
//! than choose between the two upstreams the operator configured.

use serde::Deserialize;
use weir_sdk::{Action, Phases, Plugin, Request, Response, ResponseAction, context, validate};

/// Opt-in by header: requests whose header `name` has one of `values` go to
/// the canary, whatever the cookie or the draw say.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// The request header.
    pub name: String,
    /// The values that select the canary (exact match).
    pub values: Vec<String>,
}

/// Configuration, as written in the route's `config` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The canary's upstream name (an `[[upstream]]` of the gateway).
    pub upstream: String,
    /// Share of new clients sent to the canary, 0..=100 (fractions allowed,
    /// to 0.01 %).
    #[serde(default)]
    pub percent: f64,
    /// Opt-in header.
    #[serde(default)]
    pub header: Option<HeaderMatch>,
    /// Remember each client's draw in a cookie.
    #[serde(default = "yes")]
    pub sticky: bool,
    /// The cookie's name.
    #[serde(default = "default_cookie")]
    pub cookie: String,
    /// The cookie's lifetime in seconds.
    #[serde(default = "default_max_age")]
    pub cookie_max_age: u64,
}

fn yes() -> bool {
    true
}

fn default_cookie() -> String {
    "weir_canary".to_owned()
}

fn default_max_age() -> u64 {
    86_400
}

/// The longest cookie lifetime accepted: one year, in seconds.
pub const MAX_COOKIE_AGE: u64 = 31_536_000;

/// The plugin.
pub struct Canary {
    upstream: String,
    /// Out of 10 000.
    basis_points: u64,
    header: Option<HeaderMatch>,
    sticky: bool,
    cookie: String,
    cookie_max_age: u64,
}

/// Context key: the fresh decision `on_response` must write into the cookie.
const CTX_NEW_DECISION: &str = "new-decision";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Canary,
    Stable,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Canary => "canary",
            Decision::Stable => "stable",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "canary" => Some(Decision::Canary),
            "stable" => Some(Decision::Stable),
            _ => None,
        }
    }
}

impl Plugin for Canary {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.upstream.is_empty() {
            return Err("upstream: must name an upstream".to_owned());
        }
        if !(0.0..=100.0).contains(&config.percent) {
            return Err(format!("percent: {} is not within 0..=100", config.percent));
        }
        if let Some(header) = &config.header {
            validate::header_name(&header.name).map_err(|e| format!("header.name: {e}"))?;
            if header.values.is_empty() {
                return Err("header.values: at least one value is required".to_owned());
            }
        }
        // RFC 6265 cookie-name is a token, like a header name.
        validate::header_name(&config.cookie).map_err(|e| format!("cookie: {e}"))?;
        if config.cookie_max_age > MAX_COOKIE_AGE {
            return Err(format!("cookie_max_age: at most {MAX_COOKIE_AGE} seconds"));
        }
        Ok(Self {
            upstream: config.upstream,
            basis_points: (config.percent * 100.0).round() as u64,
            header: config.header,
            sticky: config.sticky,
            cookie: config.cookie,
            cookie_max_age: config.cookie_max_age,
        })
    }

    /// The response phase only sets the sticky cookie.
    fn phases(&self) -> Phases {
        if self.sticky {
            Phases::REQUEST | Phases::RESPONSE
        } else {
            Phases::REQUEST
        }
    }

    fn on_request(&mut self, req: &mut Request<'_>) -> Action {
        let decision = if self.opted_in(req) {
            Decision::Canary
        } else if let Some(remembered) = self.sticky.then(|| self.remembered(req)).flatten() {
            remembered
        } else {
            let drawn = self.draw();
            if self.sticky {
                context::set(CTX_NEW_DECISION, drawn.as_str());
            }
            drawn
        };
        match decision {
            Decision::Canary => Action::route_to(self.upstream.as_str()),
            Decision::Stable => Action::Continue,
        }
    }

    fn on_response(&mut self, _req: &Request<'_>, resp: &mut Response<'_>) -> ResponseAction {
        let Some(decision) = context::get(CTX_NEW_DECISION) else {
            return ResponseAction::Continue;
        };
        let cookie = format!(
            "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
            self.cookie, decision, self.cookie_max_age
        );
        if let Err(e) = resp.add_header("set-cookie", &cookie) {
            weir_sdk::log::error(&format!("could not set the canary cookie: {e}"));
        }
        ResponseAction::Continue
    }
}

impl Canary {
    fn opted_in(&self, req: &Request<'_>) -> bool {
        let Some(header) = &self.header else {
            return false;
        };
        req.header_all(&header.name)
            .iter()
            .any(|value| header.values.iter().any(|wanted| wanted == value))
    }

    /// The decision in the client's cookie, if it holds a valid one.
    fn remembered(&self, req: &Request<'_>) -> Option<Decision> {
        // HTTP/2 clients may split cookies over several headers.
        req.header_all("cookie").iter().find_map(|line| {
            line.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == self.cookie).then(|| Decision::parse(value.trim_matches('"')))?
            })
        })
    }

    fn draw(&self) -> Decision {
        if weir_sdk::random::u64() % 10_000 < self.basis_points {
            Decision::Canary
        } else {
            Decision::Stable
        }
    }
}

weir_sdk::export!(Canary);

#[cfg(test)]
mod tests;
