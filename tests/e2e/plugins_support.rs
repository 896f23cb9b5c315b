//! Helpers for the plugin tests: the fixture plugins of
//! tests/fixtures/plugins, built once per test run for wasm32-wasip2 (a
//! `OnceLock` runs cargo the first time a test asks), and a gateway
//! configuration with a plugin folder holding copies of them under the
//! names a test chooses.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::upstream::Upstream;
use crate::support::{Gateway, GatewayBuilder, client, config, get};

/// Builds a plugin workspace of this repository (`tests/fixtures/plugins`,
/// `plugins`) once for wasm32-wasip2 in release mode into its own target
/// folder, and returns the folder holding the `.wasm` files.
pub fn build_wasm_workspace(workspace: &str, target_name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join(target_name);
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(root.join(workspace))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo to build plugins");
    assert!(
        out.status.success(),
        "building {workspace} failed (is the wasm32-wasip2 target installed?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("wasm32-wasip2").join("release")
}

/// The built fixtures, by crate name: `basic`, `hostile`, `wrongver`.
pub fn fixture(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir =
        BUILT.get_or_init(|| build_wasm_workspace("tests/fixtures/plugins", "fixture-plugins"));
    let path = dir.join(format!("fixture_{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A core Wasm module (not a component), as a plugin file must not be.
pub fn core_module() -> Vec<u8> {
    wat::parse_str("(module (func (export \"on-request\")))").unwrap()
}

/// Adds `plugins/NAME.wasm` files (name, fixture crate) to a gateway.
pub fn with_plugins(mut b: GatewayBuilder, plugins: &[(&str, &str)]) -> GatewayBuilder {
    for (name, fixture_name) in plugins {
        b = b.file(&format!("plugins/{name}.wasm"), fixture(fixture_name));
    }
    b
}

/// Writes a configuration and its plugin files into a fresh folder; the
/// folder lives as long as the returned guard.
fn stage(config: &str, files: &[(String, Vec<u8>)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

/// Runs `weir check` on a configuration with the given plugin files.
pub fn check(config: &str, files: &[(String, Vec<u8>)]) -> (bool, String) {
    let (_dir, path) = stage(config, files);
    let out = Command::new(crate::support::weir_bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Starts `weir run` expecting it to fail; returns its stderr.
pub fn run_fails(config: &str, files: &[(String, Vec<u8>)]) -> String {
    let (_dir, path) = stage(config, files);
    let mut child = Command::new(crate::support::weir_bin())
        .args(["run", "-c"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "weir run should have failed");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir run did not fail within 30s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// Log lines (JSON) that contain every one of `needles`.
pub fn log_lines_with(gw: &Gateway, needles: &[&str]) -> Vec<String> {
    gw.logs()
        .into_iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// Two workers (the configuration helper's default), a plain route and a
/// route whose plugin spins to its deadline (10 ms, the default) when a
/// request has `x-spin`. `limits` goes into `[plugin_limits.spinner]`.
pub async fn spinner_gateway(limits: &str) -> (Upstream, Gateway) {
    let app = Upstream::echo("app").await;
    let routes = format!(
        r#"
[plugin_limits.spinner]
{limits}

[[route]]
name = "plain"
upstream = "app"
path = "/plain"

[[route]]
name = "spin"
upstream = "app"
path = "/spin"
plugins = [{{ name = "spinner", config = {{ mode = "spin-on-demand" }} }}]

[admin]
address = "127.0.0.1:0"
"#
    );
    let cfg = config("", &[("app", app.addr)], &routes);
    assert!(cfg.contains("workers = 2"), "{cfg}");
    let gw = with_plugins(Gateway::with_config(cfg), &[("spinner", "hostile")]).start();
    (app, gw)
}

/// A URL on the gateway's main listener (it also has an admin one).
pub fn main_url(gw: &Gateway, path: &str) -> String {
    format!("http://{}{path}", gw.listener("main"))
}

/// The `name` object of plugin `plugin` in `/admin/plugins`.
pub async fn admin_plugin_view(gw: &Gateway, plugin: &str, name: &str) -> serde_json::Value {
    let url = format!("http://{}/admin/plugins", gw.listener("admin"));
    let all = get(&client(), &url, &[]).await.json();
    all["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == plugin)
        .map(|p| p[name].clone())
        .unwrap_or(serde_json::Value::Null)
}
