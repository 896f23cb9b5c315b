//! The exposition of the plugin metrics: each plugin's cells summed over
//! threads and its slots read, then one family at a time (the text formats
//! want a family's samples together). Zero series are left out, except
//! the gauges that say what exists (instances, open breakers, info).

use std::fmt;
use std::sync::Arc;

use super::{
    CALL_BOUNDS, CALL_OUTCOMES, Cause, MAX_COUNTER_NAME_BYTES, MAX_COUNTERS, Outcome, Phase,
    PluginStats, SlotReading, lock,
};
use crate::metrics::{Family, HistSum, Labels, Out};

/// One plugin's series, summed over threads and slots at scrape time.
struct Summed {
    calls: [[u64; Outcome::ALL.len()]; Phase::ALL.len()],
    duration: [HistSum<16>; Phase::ALL.len()],
    traps: [u64; Cause::ALL.len()],
    rejected: [u64; Phase::ALL.len()],
    skipped: u64,
    outbound: [u64; CALL_OUTCOMES.len()],
    slots: SlotReading,
}

impl Summed {
    fn of(s: &PluginStats) -> Summed {
        let mut sum = Summed {
            calls: Default::default(),
            duration: Default::default(),
            traps: Default::default(),
            rejected: Default::default(),
            skipped: 0,
            outbound: Default::default(),
            slots: s.reading(),
        };
        for c in s.cells.all() {
            for p in 0..Phase::ALL.len() {
                for o in 0..Outcome::ALL.len() {
                    sum.calls[p][o] = sum.calls[p][o].wrapping_add(c.calls[p][o].get());
                }
                sum.duration[p].add(&c.duration[p]);
                sum.rejected[p] = sum.rejected[p].wrapping_add(c.rejected[p].get());
            }
            for (t, cell) in sum.traps.iter_mut().zip(&c.traps) {
                *t = t.wrapping_add(cell.get());
            }
            sum.skipped = sum.skipped.wrapping_add(c.skipped.get());
            for (t, cell) in sum.outbound.iter_mut().zip(&c.outbound) {
                *t = t.wrapping_add(cell.get());
            }
        }
        sum
    }
}

/// Every series of every plugin: one call per family (the text formats
/// want a family's samples together). Series that are zero are left out,
/// except the gauges that say what exists (instances, open breakers,
/// info).
pub(super) fn encode(plugins: &Family<PluginStats>, out: &mut Out<'_>) -> fmt::Result {
    let plugins = plugins.snapshot();
    let summed: Vec<(&str, &PluginStats, Summed)> = plugins
        .iter()
        .map(|(n, s)| (n.as_str(), &**s, Summed::of(s)))
        .collect();
    let per_plugin = |f: &dyn Fn(&Summed) -> u64| -> Vec<(Labels<'_>, u64)> {
        summed
            .iter()
            .map(|(n, _, s)| (vec![("plugin", *n)], f(s)))
            .filter(|(_, v)| *v > 0)
            .collect()
    };

    let mut calls = Vec::new();
    let mut durations = Vec::new();
    let mut traps = Vec::new();
    let mut rejected = Vec::new();
    let mut outbound = Vec::new();
    for (name, _, s) in &summed {
        for (o, n) in CALL_OUTCOMES.iter().zip(s.outbound) {
            if n > 0 {
                outbound.push((vec![("plugin", *name), ("outcome", *o)], n));
            }
        }
        for p in Phase::ALL {
            for o in Outcome::ALL {
                let n = s.calls[p as usize][o as usize];
                if n > 0 {
                    calls.push((
                        vec![
                            ("plugin", *name),
                            ("phase", p.as_str()),
                            ("outcome", o.as_str()),
                        ],
                        n,
                    ));
                }
            }
            let h = &s.duration[p as usize];
            if h.count() > 0 {
                durations.push((vec![("plugin", *name), ("phase", p.as_str())], h.clone()));
            }
            let n = s.rejected[p as usize];
            if n > 0 {
                rejected.push((vec![("plugin", *name), ("phase", p.as_str())], n));
            }
        }
        for c in Cause::ALL {
            let n = s.traps[c as usize];
            if n > 0 {
                traps.push((vec![("plugin", *name), ("cause", c.as_str())], n));
            }
        }
    }
    out.counter(
        "weir_plugin_calls",
        "Plugin calls by phase (init: making an instance) and outcome: ok (the call returned), \
         trap, or unavailable (no instance could take it). Calls refused by an open breaker or \
         a spent CPU share are counted in weir_plugin_breaker_refusals and \
         weir_plugin_cpu_share_refusals.",
        calls,
    )?;
    out.histogram(
        "weir_plugin_call_duration_seconds",
        "Time plugin calls ran, returned or trapped, by phase (init includes instantiating).",
        &CALL_BOUNDS,
        durations,
    )?;
    out.counter(
        "weir_plugin_traps",
        "Plugin calls that trapped, by cause: deadline (CPU deadline), wall_clock (the \
         wall-clock cap behind it), memory (growing past the memory cap), other.",
        traps,
    )?;
    out.counter(
        "weir_plugin_rejected_answers",
        "Plugin calls that returned an answer Weir did not use (invalid, or init refusing its \
         configuration), by phase.",
        rejected,
    )?;
    out.counter(
        "weir_plugin_outbound_calls",
        "HTTP calls plugins started to upstreams, by how they ended: answered, or refused at the \
         start (not_allowed, invalid, limit, deadline), or without an answer (timeout, \
         too_large, failed). The upstream's own metrics count each try.",
        outbound,
    )?;
    out.counter(
        "weir_plugin_skips",
        "Failed plugin calls skipped under failure = \"open\": the request went on without the \
         plugin.",
        per_plugin(&|s| s.skipped),
    )?;
    out.gauge(
        "weir_plugin_instances",
        "Plugin instances alive now, idle or serving, over the plugin's configurations.",
        summed
            .iter()
            .map(|(n, _, s)| (vec![("plugin", *n)], s.slots.instances as f64)),
    )?;
    out.gauge(
        "weir_plugin_breakers_open",
        "Workers whose breaker for the plugin is open or probing now, over its configurations.",
        summed
            .iter()
            .map(|(n, _, s)| (vec![("plugin", *n)], s.slots.breakers_open as f64)),
    )?;
    out.counter(
        "weir_plugin_breaker_opens",
        "Times a worker's breaker for the plugin opened after calls in a row ended at their \
         deadline.",
        per_plugin(&|s| s.slots.breaker_opens),
    )?;
    out.counter(
        "weir_plugin_breaker_refusals",
        "Plugin calls refused at once by an open breaker.",
        per_plugin(&|s| s.slots.breaker_refusals),
    )?;
    out.counter(
        "weir_plugin_cpu_share_refusals",
        "Plugin calls refused at once because the worker's CPU share for the plugin was spent.",
        per_plugin(&|s| s.slots.share_refusals),
    )?;
    out.counter(
        "weir_plugin_cpu_share_spent",
        "Times a worker's CPU share for the plugin went from available to spent.",
        per_plugin(&|s| s.slots.share_spent),
    )?;
    out.counter(
        "weir_plugin_cpu_charged_seconds",
        "Worker time charged to the plugin's calls against its CPU share (sampled on epoch \
         ticks).",
        summed
            .iter()
            .filter(|(_, _, s)| s.slots.cpu_charged_ms > 0)
            .map(|(n, _, s)| (vec![("plugin", *n)], s.slots.cpu_charged_ms as f64 / 1e3)),
    )?;
    let serving: Vec<(&str, Arc<str>)> = summed
        .iter()
        .filter_map(|(n, s, _)| lock(&s.serving).clone().map(|sha| (*n, sha)))
        .collect();
    out.gauge(
        "weir_plugin_info",
        "The version of the plugin serving, by its file's sha256 (always 1).",
        serving
            .iter()
            .map(|(n, sha)| (vec![("plugin", *n), ("sha256", &**sha)], 1.0)),
    )?;
    let mut attempts = Vec::new();
    let mut rejections = Vec::new();
    for (name, s, _) in &summed {
        for ((trigger, outcome), n) in lock(&s.attempts).iter() {
            attempts.push((
                vec![
                    ("plugin", *name),
                    ("trigger", *trigger),
                    ("outcome", *outcome),
                ],
                *n,
            ));
        }
        for ((trigger, step), n) in lock(&s.rejections).iter() {
            rejections.push((
                vec![("plugin", *name), ("trigger", *trigger), ("step", *step)],
                *n,
            ));
        }
    }
    out.counter(
        "weir_plugin_deploys",
        "Attempts to put a plugin file in service, by trigger and outcome (deployed, rejected, \
         removed: the file is gone and the last good version keeps serving).",
        attempts,
    )?;
    out.counter(
        "weir_plugin_deploy_rejections",
        "Rejected plugin deploys by the step that refused them (read, validate, compile, link, \
         init, timeout).",
        rejections,
    )?;
    let counters: Vec<(&str, Vec<(String, u64)>)> = summed
        .iter()
        .map(|(n, s, _)| (*n, s.counters.snapshot()))
        .collect();
    out.counter(
        "weir_plugin_counted",
        &format!(
            "Counters plugins add through counter-add, by plugin and counter name (at most \
             {MAX_COUNTERS} names of 1 to {MAX_COUNTER_NAME_BYTES} bytes per plugin)."
        ),
        counters.iter().flat_map(|(plugin, cs)| {
            cs.iter()
                .map(|(name, v)| (vec![("plugin", *plugin), ("name", name.as_str())], *v))
        }),
    )
}
