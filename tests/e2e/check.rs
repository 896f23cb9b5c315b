//! `weir check`: every bundled example is valid; a broken file gets every
//! problem named with its line and key, and a non-zero exit.

use std::process::Command;

use crate::support::*;

fn toml_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_example_configuration_passes_check() {
    let mut files = Vec::new();
    toml_files(&repo_root().join("examples"), &mut files);
    assert!(!files.is_empty(), "no example configurations found");
    for f in files {
        // A configuration with plugins is checked beside freshly built
        // bundled plugins, in the folder it names (`plugins.d`), laid out
        // as its README tells an operator to.
        let text = std::fs::read_to_string(&f).unwrap();
        let staged = tempfile::tempdir().unwrap();
        let f = if text.contains("[plugins]") {
            let dir = staged.path().join("plugins.d");
            std::fs::create_dir_all(&dir).unwrap();
            for p in [
                "api-key",
                "jwt-auth",
                "ext-auth",
                "rate-limit",
                "transform",
                "canary",
                "noop",
                "header-rewrite",
            ] {
                let wasm = crate::bundled_plugins::bundled(p);
                std::fs::write(dir.join(format!("{p}.wasm")), wasm).unwrap();
            }
            let copy = staged.path().join("weir.toml");
            std::fs::write(&copy, &text).unwrap();
            copy
        } else if text.contains("[listener.tls]") {
            // The TLS example's certificates are made by its script, as
            // run.sh makes them before it starts Weir.
            let script = f.parent().unwrap().join("make-certs.sh");
            let made = Command::new(&script)
                .arg(staged.path().join("certs"))
                .output()
                .unwrap();
            assert!(
                made.status.success(),
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&made.stderr)
            );
            let copy = staged.path().join("weir.toml");
            std::fs::write(&copy, &text).unwrap();
            copy
        } else {
            f
        };
        let out = Command::new(weir_bin())
            .arg("check")
            .arg("-c")
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} failed check:\n{}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn broken_configuration_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.toml");
    std::fs::write(
        &f,
        r#"[[listener]]
address = "127.0.0.1:8080"

[[upstream]]
name = "app"
endpoints = ["127.0.0.1:9000"]

[[route]]
upstream = "app"
path_prefx = "/api"

[[route]]
upstream = "missing"
"#,
    )
    .unwrap();
    let out = Command::new(weir_bin())
        .arg("check")
        .arg("-c")
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("broken.toml:8: route[0]"), "{err}");
    assert!(err.contains("unknown field `path_prefx`"), "{err}");
    assert!(
        err.contains("broken.toml:12: route[1] (route-1).upstream"),
        "{err}"
    );
    assert!(err.contains("upstream `missing` is not defined"), "{err}");
    assert!(err.contains("2 problem(s) found"), "{err}");

    // `weir run` refuses the same file and says why.
    let out = Command::new(weir_bin())
        .arg("run")
        .arg("-c")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("path_prefx"));
}
