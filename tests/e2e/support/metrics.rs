//! Reading a gateway's metrics in tests: one scrape of `/metrics` on the
//! admin listener, one sample's value, and `promtool check metrics` on a
//! scrape.

use super::{Gateway, client, get};

/// One scrape of `/metrics` on the admin listener (Prometheus text format).
pub async fn scrape(gw: &Gateway) -> String {
    let url = format!("http://{}/metrics", gw.listener("admin"));
    let r = get(&client(), &url, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// The value of the one sample `series` (name and labels exactly as
/// rendered), or `None` when the scrape has no such series.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// `promtool check metrics` on a scrape: no lint problem, no parse error.
/// CI installs promtool (Debian package `prometheus`); without it the test
/// fails rather than pass unchecked.
pub fn promtool_finds_nothing(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is needed to check the /metrics exposition and could not be run ({e}); \
                 install it: apt-get install -y prometheus"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}): {said}\nscrape:\n{text}",
        out.status
    );
}
