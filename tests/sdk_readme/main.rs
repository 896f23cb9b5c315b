//! The SDK's README followed as a new user would (issue 4, must-show 1):
//! in a copy of the repository's `plugins/` and `sdk/` (and the root
//! manifest the SDK inherits from), copy the template,
//! rename it and add it to the workspace as the README says, replace its
//! code with the README's plugin and test, run `cargo test` on it, build
//! the component, and deploy it with the README's configuration into the
//! real gateway, which must then serve it. The README's code blocks are
//! read from the file, so the test fails when the README stops working.
//!
//! A test binary of its own, not part of `e2e`: Cargo runs test binaries
//! one after another, so its two builds never share the cores with the
//! end-to-end tests that measure time.

#[path = "../e2e/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Gateway, Upstream, client, get};

/// The body of the first fenced block opened by `fence` (e.g. "```toml")
/// after the heading `heading`.
fn block_after<'a>(readme: &'a str, heading: &str, fence: &str) -> &'a str {
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("the README has no heading {heading:?}"));
    let open = format!("{fence}\n");
    let start = at
        + readme[at..]
            .find(&open)
            .unwrap_or_else(|| panic!("no {fence} block after {heading:?}"))
        + open.len();
    let len = readme[start..].find("```\n").expect("an unclosed block");
    &readme[start..start + len]
}

/// Copies a folder, leaving out build output: anything named `target`,
/// a folder or a symlink to one (a fresh checkout has none).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name() == "target" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Replaces the one occurrence of `old` in the file at `path`.
fn edit(path: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        text.matches(old).count(),
        1,
        "{old:?} in {}",
        path.display()
    );
    std::fs::write(path, text.replacen(old, new, 1)).unwrap();
}

/// Runs cargo in `dir` with `target_dir` as its target folder; panics with
/// its output when it fails, and returns its output otherwise.
fn cargo(dir: &Path, target_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("run cargo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cargo {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_readme_gives_a_plugin_the_gateway_serves() {
    let root = support::repo_root();
    let readme = std::fs::read_to_string(root.join("sdk/README.md")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    copy_tree(&root.join("plugins"), &plugins);
    copy_tree(&root.join("sdk"), &work.path().join("sdk"));
    // The SDK takes its edition and version from the root workspace.
    std::fs::copy(root.join("Cargo.toml"), work.path().join("Cargo.toml")).unwrap();

    // 2. Start from the template.
    let step2 = block_after(&readme, "## 2. Start from the template", "```sh");
    assert_eq!(step2.trim(), "cp -r plugins/template plugins/my-plugin");
    copy_tree(&plugins.join("template"), &plugins.join("my-plugin"));
    assert!(readme.contains("rename the package:\n  `name = \"my-plugin\"`"));
    edit(
        &plugins.join("my-plugin/Cargo.toml"),
        "name = \"plugin-template\"",
        "name = \"my-plugin\"",
    );
    assert!(readme.contains("add `\"my-plugin\"` to `members`"));
    edit(
        &plugins.join("Cargo.toml"),
        "members = [\n",
        "members = [\n    \"my-plugin\",\n",
    );

    // 3. and 4. The README's plugin, and its test beside it.
    let code = block_after(&readme, "## 3. Write the plugin", "```rust");
    let test = block_after(&readme, "## 4. Test it natively", "```rust,ignore");
    std::fs::write(
        plugins.join("my-plugin/src/lib.rs"),
        format!("{code}\n{test}"),
    )
    .unwrap();
    let step4 = block_after(&readme, "## 4. Test it natively", "```sh");
    assert_eq!(step4.trim(), "cd plugins\ncargo test -p my-plugin");
    // The bundled plugins' own native target folder: the dependencies are
    // the same, only the copy's crates are new.
    let tested = cargo(
        &plugins,
        &root.join("plugins/target"),
        &["test", "-p", "my-plugin"],
    );
    assert!(
        tested.contains("test tests::refuses_without_the_header ... ok"),
        "{tested}"
    );

    // 5. Build the component (into the folder the end-to-end tests build
    // the bundled plugins in, for the same reason).
    let step5 = block_after(&readme, "## 5. Build the component", "```sh");
    let build = "cargo build --release --target wasm32-wasip2 -p my-plugin";
    assert!(step5.contains(build), "{step5}");
    let wasm_target: PathBuf = root.join("target/bundled-plugins");
    cargo(
        &plugins,
        &wasm_target,
        &build.split(' ').skip(1).collect::<Vec<_>>(),
    );
    let component =
        std::fs::read(wasm_target.join("wasm32-wasip2/release/my_plugin.wasm")).unwrap();

    // 6. Deploy it: the README's configuration, with the listener and the
    // upstream it leaves to the reader.
    let up = Upstream::echo("backend").await;
    let routes = block_after(&readme, "## 6. Deploy it", "```toml");
    let config = support::config("", &[("backend", up.addr)], routes);
    let gw = Gateway::with_config(config)
        .file("plugins/my-plugin.wasm", component)
        .start();
    let check = Command::new(support::weir_bin())
        .args(["check", "-c"])
        .arg(gw.dir().join("weir.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let c = client();
    let refused = get(&c, &gw.url("/orders"), &[]).await;
    assert_eq!(refused.status, 401, "{}", gw.logs_for_failure());
    assert_eq!(refused.header("www-authenticate"), Some("Custom"));
    assert_eq!(refused.text(), "missing credentials");
    assert_eq!(up.count(), 0);

    let served = get(&c, &gw.url("/orders"), &[("x-key", "k1")]).await;
    assert_eq!(served.status, 200, "{}", gw.logs_for_failure());
    assert_eq!(served.header("x-seen"), Some("k1"));
    assert_eq!(served.json()["server"], "backend");
    assert_eq!(up.count(), 1);
}
