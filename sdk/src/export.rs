//! The component's `guest` export: [`Guest`] implements the generated
//! export for any [`Plugin`], keeping the one instance a component holds
//! and the request, response and header-fields handles `init` received,
//! handing the phases the results of calls and fleet operations as the
//! SDK's types, and turning the phases' answers into the contract's.
//! Compiled for Wasm only; [`export!`](crate::export!) names it.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use crate::action::{Action, BodyAction, Reply, ResponseAction};
use crate::backend::HeaderFields;
use crate::backend::{RequestRef, ResponseRef, WasmHead};
use crate::bindings::exports::weir::plugin::guest;
use crate::bindings::weir::plugin::{calls, fleet, types};
use crate::calls::CallResult;
use crate::fleet::FleetResult;
use crate::http::{Request, Response};
use crate::phases::Phases;
use crate::plugin::{Plugin, instantiate};

thread_local! {
    // The component's one plugin instance. Wasm components are single
    // threaded and the host never re-enters a guest, so a RefCell suffices;
    // it is `dyn Any` because a static cannot be generic over the plugin type.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    // The handles `init` received, kept for the instance's life: each
    // phase's calls go through them.
    static HEADS: RefCell<Option<guest::Heads>> = const { RefCell::new(None) };
}

/// Runs `f` with the plugin and the instance's request and response.
fn with_heads<P: Plugin, R>(f: impl FnOnce(&mut P, RequestRef<'_>, ResponseRef<'_>) -> R) -> R {
    HEADS.with(|heads| {
        let heads = heads.borrow();
        let h = heads
            .as_ref()
            .expect("weir-sdk: a phase ran before a successful init");
        let req = WasmHead::new(&h.request, &h.request_headers);
        let resp = WasmHead::new(&h.response, &h.response_headers);
        with_plugin::<P, _>(|p| f(p, req, resp))
    })
}

/// Runs `f` with the instance `init` created. A phase before `init` is a
/// host bug; panicking traps the call, and the host discards the instance.
fn with_plugin<P: Plugin, R>(f: impl FnOnce(&mut P) -> R) -> R {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let plugin = slot
            .as_mut()
            .and_then(|any| any.downcast_mut::<P>())
            .expect("weir-sdk: a phase ran before a successful init");
        f(plugin)
    })
}

/// Sets a [`Reply`]'s status and headers on the answer the `response`
/// handle names during the request phases, and hands back its body. A
/// value the host refuses is not reported here: the host refuses the whole
/// answer (and logs why), as the contract says.
fn reply_body(mut resp: ResponseRef<'_>, reply: Reply) -> Vec<u8> {
    let (status, headers, body) = reply.into_parts();
    let _ = resp.set_status(status);
    for (name, value) in &headers {
        let _ = resp.add_header(name, value);
    }
    body
}

/// The generated `guest` export for the plugin `P`; named by
/// [`export!`](crate::export!).
pub struct Guest<P>(PhantomData<P>);

impl<P: Plugin> guest::Guest for Guest<P> {
    fn init(config: String, heads: guest::Heads) -> Result<types::Capabilities, String> {
        // First, so a panic in the plugin's own `new` is reported too.
        crate::panic::install();
        HEADS.with(|cell| *cell.borrow_mut() = Some(heads));
        let plugin = instantiate::<P>(&config)?;
        let phases = plugin.phases();
        INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(plugin)));
        Ok(capabilities(phases))
    }

    fn on_request() -> types::Action {
        with_heads::<P, _>(|p, req, resp| {
            let action = p.on_request(&mut Request::new(req));
            action_out(resp, action)
        })
    }

    fn on_request_calls(
        results: Vec<calls::CallResult>,
        fleet: Vec<fleet::FleetResult>,
    ) -> types::Action {
        let (results, fleet) = (results_in(results), fleet_in(fleet));
        with_heads::<P, _>(|p, req, resp| {
            let action = p.on_request_calls(&mut Request::new(req), results, fleet);
            action_out(resp, action)
        })
    }

    fn on_request_body(body: Vec<u8>) -> types::BodyAction {
        with_heads::<P, _>(
            |p, req, resp| match p.on_request_body(&mut Request::new(req), body) {
                BodyAction::Continue => types::BodyAction::Continue,
                BodyAction::Replace(body) => types::BodyAction::Replace(body),
                BodyAction::Respond(reply) => types::BodyAction::Respond(reply_body(resp, reply)),
            },
        )
    }

    fn on_response() -> types::ResponseAction {
        with_heads::<P, _>(|p, req, resp| {
            response_action_out(p.on_response(&Request::new(req), &mut Response::new(resp)))
        })
    }

    fn on_response_calls(
        results: Vec<calls::CallResult>,
        fleet: Vec<fleet::FleetResult>,
    ) -> types::ResponseAction {
        let (results, fleet) = (results_in(results), fleet_in(fleet));
        with_heads::<P, _>(|p, req, resp| {
            response_action_out(p.on_response_calls(
                &Request::new(req),
                &mut Response::new(resp),
                results,
                fleet,
            ))
        })
    }

    fn on_response_body(body: Vec<u8>) -> Option<Vec<u8>> {
        with_heads::<P, _>(|p, req, resp| {
            p.on_response_body(&Request::new(req), &mut Response::new(resp), body)
        })
    }

    fn on_background_calls(results: Vec<calls::CallResult>, fleet: Vec<fleet::FleetResult>) {
        let (results, fleet) = (results_in(results), fleet_in(fleet));
        with_heads::<P, _>(|p, req, _| p.on_background_calls(&Request::new(req), results, fleet))
    }

    fn on_log(status: u16) {
        with_heads::<P, _>(|p, req, _| p.on_log(&Request::new(req), status))
    }
}

/// The contract's answer for an [`Action`]; a reply's status and headers
/// go on the `response` handle first.
fn action_out(resp: ResponseRef<'_>, action: Action) -> types::Action {
    match action {
        Action::Continue => types::Action::Continue,
        Action::Respond(reply) => types::Action::Respond(reply_body(resp, reply)),
        Action::RouteTo(upstream) => types::Action::RouteTo(upstream),
        Action::Wait => types::Action::Wait,
    }
}

fn response_action_out(action: ResponseAction) -> types::ResponseAction {
    match action {
        ResponseAction::Continue => types::ResponseAction::Continue,
        ResponseAction::Wait => types::ResponseAction::Wait,
    }
}

/// The host's results as the SDK's.
fn results_in(results: Vec<calls::CallResult>) -> Vec<CallResult> {
    results.into_iter().map(CallResult::from).collect()
}

/// The host's fleet results as the SDK's.
fn fleet_in(fleet: Vec<fleet::FleetResult>) -> Vec<FleetResult> {
    fleet.into_iter().map(FleetResult::from).collect()
}

/// The contract's flags for a plugin's [`Phases`].
fn capabilities(phases: Phases) -> types::Capabilities {
    use types::Capabilities as F;
    let mut flags = F::empty();
    for (phase, flag) in [
        (Phases::REQUEST, F::REQUEST),
        (Phases::REQUEST_BODY, F::REQUEST_BODY),
        (Phases::RESPONSE, F::RESPONSE),
        (Phases::RESPONSE_BODY, F::RESPONSE_BODY),
        (Phases::LOG, F::LOG),
    ] {
        flags.set(flag, phases.contains(phase));
    }
    flags
}
