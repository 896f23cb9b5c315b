//! The CPU share through the real gateway, one request at a time: a
//! plugin that fails open is skipped once its share is spent, and runs
//! again once the share has refilled. The share and the breaker under
//! sustained attack from several connections are the `attack` test
//! binary's (tests/attack), which runs alone so its load disturbs no other
//! test.

use std::time::Duration;

use crate::plugins_support::*;
use crate::support::*;

#[tokio::test]
async fn a_spent_share_skips_a_plugin_that_fails_open_and_refills() {
    // A tenth of a worker saved up over 200 ms: 20 ms, two spins' worth.
    let (_app, gw) = spinner_gateway(
        "failure = \"open\"\nbreaker_after = 0\ncpu_share = \"10%\"\ncpu_window = \"200ms\"",
    )
    .await;
    let c = client();
    let spin = main_url(&gw, "/spin");
    // Spin until a call is skipped without running: the share is spent.
    let mut skipped = None;
    for _ in 0..50 {
        let r = get(&c, &spin, &[("x-spin", "1")]).await;
        assert_eq!(r.status, 200, "failing open, every answer is 200");
        let id = r.header("x-request-id").unwrap().to_owned();
        let why = eventually(Duration::from_secs(5), || async {
            !log_lines_with(&gw, &[&id, "plugin skipped"]).is_empty()
        })
        .await;
        assert!(why, "{}", gw.logs_for_failure());
        if log_lines_with(&gw, &[&id, "exceeded its CPU deadline"]).is_empty() {
            skipped = Some(id);
            break;
        }
    }
    let id = skipped.expect("the share was never spent");
    assert_eq!(
        log_lines_with(
            &gw,
            &[
                &id,
                "used their CPU share (10% of the worker, saved up over 200ms)"
            ]
        )
        .len(),
        1,
        "{}",
        gw.logs_for_failure()
    );
    // A tenth of real time refills it: the plugin runs again (and spins
    // to its deadline) within a second or two.
    let ran = eventually(Duration::from_secs(5), || async {
        let r = get(&c, &spin, &[("x-spin", "1")]).await;
        let id = r.header("x-request-id").unwrap().to_owned();
        eventually(Duration::from_secs(2), || async {
            !log_lines_with(&gw, &[&id, "exceeded its CPU deadline"]).is_empty()
        })
        .await
    })
    .await;
    assert!(ran, "{}", gw.logs_for_failure());
    let share = admin_plugin_view(&gw, "spinner", "cpu_share").await;
    assert!(share["refused"].as_u64().unwrap() >= 1, "{share}");
}
