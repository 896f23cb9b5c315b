//! HTTPS at the edge, through the real binary with real clients: curl and
//! `openssl s_client` (SNI choice, ALPN h2 and http/1.1, old versions
//! refused with `protocol_version`, unknown names refused with
//! `unrecognized_name`, resumption seen as `Reused`), mutual TLS, the
//! redirect listener, the handshake timeout, bad input, certificates
//! swapped under load and a bad certificate file refused while the old
//! one serves. Certificates come from rcgen (`support::pki`). Every
//! failure is also read back from the counters in `/admin/tls`.

use std::net::SocketAddr;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::plugins_support::with_plugins;
use crate::support::pki::{Ca, Pem};
use crate::support::upstream::Upstream;
use crate::support::*;

/// A gateway whose `main` listener serves TLS with `tls` (the body of
/// `[listener.tls]`), certificate files `files` (name, text) in its folder,
/// an admin listener, and `extra` (more listeners) after the routes.
async fn start(tls: &str, files: &[(&str, &str)], extra: &str) -> (Upstream, Gateway) {
    let app = Upstream::echo("app").await;
    let routes = format!(
        "[[route]]\nname = \"all\"\nupstream = \"app\"\n\n[admin]\naddress = \"127.0.0.1:0\"\n{extra}"
    );
    let cfg = config(
        &format!("\n[listener.tls]\n{tls}\n"),
        &[("app", app.addr)],
        &routes,
    );
    let mut b = Gateway::with_config(cfg);
    for (name, text) in files {
        b = b.file(name, text.as_bytes());
    }
    (app, b.start())
}

/// The usual files: `ca.pem`, an ECDSA certificate for `a.test` and an
/// RSA one for `*.b.test`.
fn usual(ca: &Ca) -> Vec<(&'static str, String)> {
    let a = ca.server(&["a.test"], false);
    let b = ca.server(&["*.b.test"], true);
    vec![
        ("ca.pem", ca.pem()),
        ("a.pem", a.cert),
        ("a.key", a.key),
        ("b.pem", b.cert),
        ("b.key", b.key),
    ]
}

const TWO_CERTS: &str = r#"certificates = [
  { cert = "a.pem", key = "a.key" },
  { cert = "b.pem", key = "b.key" },
]"#;

fn refs<'a>(files: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    files.iter().map(|(n, t)| (*n, t.as_str())).collect()
}

fn main_addr(gw: &Gateway) -> SocketAddr {
    gw.listener("main")
}

async fn run(program: &str, args: &[String], stdin: &[u8]) -> Output {
    run_after(program, args, stdin, Duration::ZERO).await
}

/// [`run`], writing `stdin` (and closing it) only after `wait`.
async fn run_after(program: &str, args: &[String], stdin: &[u8], wait: Duration) -> Output {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (is it installed?)"));
    let mut input = child.stdin.take().unwrap();
    tokio::time::sleep(wait).await;
    input.write_all(stdin).await.ok();
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the client finished within 30 s")
        .unwrap()
}

/// curl to `https://NAME:PORT/PATH` resolved to the gateway, trusting
/// `ca.pem` from the gateway's folder; `-w` prints the HTTP version last.
async fn curl(gw: &Gateway, name: &str, path: &str, extra: &[&str]) -> Output {
    let addr = main_addr(gw);
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "10".into(),
        "--cacert".into(),
        gw.dir().join("ca.pem").display().to_string(),
        "--resolve".into(),
        format!("{name}:{}:127.0.0.1", addr.port()),
        "-w".into(),
        "\n%{http_code} %{http_version}".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("https://{name}:{}{path}", addr.port()));
    run("curl", &args, b"").await
}

/// `openssl s_client` to the gateway; stdout and stderr together.
async fn s_client(gw: &Gateway, extra: &[&str]) -> String {
    s_client_for(gw, extra, Duration::ZERO).await
}

/// [`s_client`], staying connected for `stay` (to receive a TLS 1.3
/// session ticket, which comes after the handshake).
async fn s_client_for(gw: &Gateway, extra: &[&str], stay: Duration) -> String {
    let mut args: Vec<String> = vec![
        "s_client".into(),
        "-connect".into(),
        main_addr(gw).to_string(),
        "-CAfile".into(),
        gw.dir().join("ca.pem").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run_after("openssl", &args, b"Q\n", stay).await;
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `/admin/tls` for the main listener.
async fn tls_admin(gw: &Gateway) -> serde_json::Value {
    let url = format!("http://{}/admin/tls", gw.listener("admin"));
    get(&client(), &url, &[]).await.json()["main"].clone()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn curl_gets_http2_or_http1_over_tls_with_the_certificate_its_sni_names() {
    let ca = Ca::new("Test CA");
    let files = usual(&ca);
    let (_app, gw) = start(TWO_CERTS, &refs(&files), "").await;

    // ALPN h2: HTTP/2 over TLS; the upstream is told the client used https.
    let out = curl(&gw, "a.test", "/x", &[]).await;
    let body = text(&out);
    assert!(out.status.success(), "{body}");
    assert!(body.ends_with("\n200 2"), "{body}");
    let echo: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "{echo}");
    // ALPN http/1.1 (or none): HTTP/1.1 over TLS.
    let out = curl(&gw, "a.test", "/x", &["--http1.1"]).await;
    assert!(text(&out).ends_with("\n200 1.1"), "{}", text(&out));

    // A wildcard name gets the RSA certificate that names it: curl
    // verifies the name, so the wrong certificate would fail here.
    let out = curl(&gw, "api.b.test", "/", &[]).await;
    assert!(text(&out).ends_with("\n200 2"), "{}", text(&out));
    // Two labels deep is not covered by `*.b.test`: the default (a.test)
    // is served, and curl refuses it for that name.
    let out = curl(&gw, "x.api.b.test", "/", &[]).await;
    assert!(!out.status.success(), "{}", text(&out));
    // An unknown name, and no name, get the default certificate.
    let s = s_client(&gw, &["-servername", "nope.test"]).await;
    assert!(s.contains("CN=a.test") || s.contains("CN = a.test"), "{s}");
    let s = s_client(&gw, &["-noservername"]).await;
    assert!(s.contains("CN=a.test") || s.contains("CN = a.test"), "{s}");

    let admin = tls_admin(&gw).await;
    let names: Vec<_> = admin["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["names"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a.test", "*.b.test"], "{admin}");
    assert!(
        admin["certificates"][0]["expires_in_days"]
            .as_u64()
            .unwrap()
            > 300
    );
    // Nothing of a key, anywhere in the admin views.
    for view in ["/admin/tls", "/admin/config"] {
        let url = format!("http://{}{view}", gw.listener("admin"));
        let all = get(&client(), &url, &[]).await.text();
        assert!(!all.contains("PRIVATE KEY"), "{all}");
        assert!(!all.contains(files[2].1.lines().nth(1).unwrap()), "{all}");
    }
}

#[tokio::test]
async fn unknown_names_are_refused_with_unrecognized_name_when_configured() {
    let ca = Ca::new("Test CA");
    let files = usual(&ca);
    let (_app, gw) = start(
        &format!("{TWO_CERTS}\nunknown_sni = \"refuse\""),
        &refs(&files),
        "",
    )
    .await;
    let s = s_client(&gw, &["-servername", "nope.test"]).await;
    assert!(s.contains("unrecognized name"), "{s}");
    let s = s_client(&gw, &["-noservername"]).await;
    assert!(s.contains("handshake failure"), "{s}");
    assert!(curl(&gw, "a.test", "/", &[]).await.status.success());
    let admin = tls_admin(&gw).await;
    assert_eq!(admin["handshakes"]["failed"]["unknown_sni"], 2, "{admin}");
    assert_eq!(admin["handshakes"]["full"], 1, "{admin}");
}

#[tokio::test]
async fn old_versions_garbage_and_plain_http_get_the_right_answer() {
    let ca = Ca::new("Test CA");
    let files = usual(&ca);
    let (_app, gw) = start(TWO_CERTS, &refs(&files), "").await;
    // OpenSSL sends TLS 1.1 only when its own security level allows it.
    let s = s_client(
        &gw,
        &[
            "-servername",
            "a.test",
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ],
    )
    .await;
    assert!(s.contains("alert protocol version"), "{s}");
    // And TLS 1.0.
    let s = s_client(
        &gw,
        &[
            "-servername",
            "a.test",
            "-tls1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ],
    )
    .await;
    assert!(s.contains("alert protocol version"), "{s}");
    // TLS 1.2 is accepted by default.
    let s = s_client(&gw, &["-servername", "a.test", "-tls1_2"]).await;
    assert!(
        s.contains("Protocol  : TLSv1.2") || s.contains("TLSv1.2"),
        "{s}"
    );

    // Plain HTTP to the TLS port: a plain 400 that says why.
    let r = raw(
        main_addr(&gw),
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("use an https:// URL"), "{r}");
    // Garbage: an alert (content type 21), then the connection closes.
    let mut tcp = TcpStream::connect(main_addr(&gw)).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
        .await
        .expect("closed")
        .ok();
    assert_eq!(got.first(), Some(&21), "{got:?}");

    // A failure is counted as its connection ends, which the client may
    // see a little before the count is made.
    let counted = |admin: &serde_json::Value| {
        let failed = &admin["handshakes"]["failed"];
        failed["version"] == 2 && failed["not_tls"] == 2
    };
    let mut admin = tls_admin(&gw).await;
    for _ in 0..50 {
        if counted(&admin) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        admin = tls_admin(&gw).await;
    }
    assert!(counted(&admin), "{admin}");
    // And the gateway serves on.
    assert!(curl(&gw, "a.test", "/", &[]).await.status.success());
}

#[tokio::test]
async fn a_listener_can_require_tls_1_3() {
    let ca = Ca::new("Test CA");
    let files = usual(&ca);
    let (_app, gw) = start(
        &format!("{TWO_CERTS}\nmin_version = \"1.3\""),
        &refs(&files),
        "",
    )
    .await;
    let s = s_client(&gw, &["-servername", "a.test", "-tls1_2"]).await;
    assert!(s.contains("alert protocol version"), "{s}");
    let out = curl(&gw, "a.test", "/", &["--tlsv1.3"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(tls_admin(&gw).await["handshakes"]["failed"]["version"], 1);
}

#[tokio::test]
async fn sessions_resume_over_tls_1_3_and_1_2() {
    let ca = Ca::new("Test CA");
    let files = usual(&ca);
    let (_app, gw) = start(TWO_CERTS, &refs(&files), "").await;
    for version in ["-tls1_3", "-tls1_2"] {
        let sess = gw.dir().join(format!("session{version}.pem"));
        let sess = sess.display().to_string();
        // The TLS 1.3 ticket arrives after the handshake: stay a moment.
        let first = s_client_for(
            &gw,
            &["-servername", "a.test", version, "-sess_out", &sess],
            Duration::from_millis(500),
        )
        .await;
        assert!(first.contains("New,"), "{first}");
        let again = s_client(&gw, &["-servername", "a.test", version, "-sess_in", &sess]).await;
        assert!(again.contains("Reused,"), "{version}: {again}");
    }
    let admin = tls_admin(&gw).await;
    assert_eq!(admin["handshakes"]["resumed"], 2, "{admin}");
}

#[tokio::test]
async fn a_silent_client_is_closed_by_the_handshake_timeout() {
    let ca = Ca::new("Test CA");
    let files = usual(&ca);
    let (_app, gw) = start(
        &format!("{TWO_CERTS}\nhandshake_timeout = \"300ms\""),
        &refs(&files),
        "",
    )
    .await;
    // One that sends nothing, one that stops halfway through a
    // ClientHello.
    let mut silent = TcpStream::connect(main_addr(&gw)).await.unwrap();
    let mut halfway = TcpStream::connect(main_addr(&gw)).await.unwrap();
    halfway
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    for tcp in [&mut silent, &mut halfway] {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "the connection stayed open");
    }
    let timeouts = eventually(Duration::from_secs(5), || async {
        tls_admin(&gw).await["handshakes"]["failed"]["timeout"] == 2
    })
    .await;
    assert!(timeouts, "{}", tls_admin(&gw).await);
}

#[tokio::test]
async fn mutual_tls_forwards_the_verified_client_and_refuses_the_rest() {
    let ca = Ca::new("Server CA");
    let clients = Ca::new("Client CA");
    let stranger = Ca::new("Other CA");
    let good = clients.client("billing", "billing.internal");
    let bad = stranger.client("mallory", "mallory.internal");
    let old = clients.expired_client("billing", "billing.internal");
    let mut files = usual(&ca);
    files.extend([
        ("clients.pem", clients.pem()),
        ("good.pem", good.cert),
        ("good.key", good.key),
        ("bad.pem", bad.cert),
        ("bad.key", bad.key),
        ("old.pem", old.cert),
        ("old.key", old.key),
    ]);
    let plain = "\n[[listener]]\nname = \"plain\"\naddress = \"127.0.0.1:0\"\n";
    let (_app, gw) = start(
        &format!(
            "{TWO_CERTS}\n[listener.tls.client_auth]\nca = \"clients.pem\"\nmode = \"required\"\nforward_header = \"X-Client-Cert\""
        ),
        &refs(&files),
        plain,
    )
    .await;
    let dir = gw.dir().to_owned();
    let path = |f: &str| dir.join(f).display().to_string();
    let (good_cert, good_key) = (path("good.pem"), path("good.key"));
    let out = curl(
        &gw,
        "a.test",
        "/",
        &[
            "--cert",
            &good_cert,
            "--key",
            &good_key,
            "-H",
            "x-client-cert: subject=\"CN=admin\"",
        ],
    )
    .await;
    let body = text(&out);
    assert!(body.ends_with("\n200 2"), "{body}");
    let echo: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    let seen = echo["headers"]["x-client-cert"]
        .as_str()
        .unwrap_or_default();
    assert!(seen.starts_with("subject=\"CN=billing"), "{seen}");
    assert!(seen.contains("dns=\"billing.internal\""), "{seen}");
    assert!(
        !seen.contains("admin"),
        "the client's own header got through: {seen}"
    );

    // No certificate, or one from a CA the listener does not trust: the
    // handshake fails.
    let out = curl(&gw, "a.test", "/", &[]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let (bad_cert, bad_key) = (path("bad.pem"), path("bad.key"));
    let out = curl(
        &gw,
        "a.test",
        "/",
        &["--cert", &bad_cert, "--key", &bad_key],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    // One from the right CA that has expired: refused too. (Under TLS 1.3
    // the client learns of it only when it reads after its Finished, so
    // curl, which reads the answer, sees it; the counter says why.)
    let (old_cert, old_key) = (path("old.pem"), path("old.key"));
    let out = curl(
        &gw,
        "a.test",
        "/",
        &["--cert", &old_cert, "--key", &old_key],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    let refused = eventually(Duration::from_secs(5), || async {
        tls_admin(&gw).await["handshakes"]["failed"]["client_cert"] == 3
    })
    .await;
    assert!(refused, "{}", tls_admin(&gw).await);

    // The plain listener never forwards a client's claim either.
    let url = format!("http://{}/", gw.listener("plain"));
    let r = get(
        &client(),
        &url,
        &[("x-client-cert", "subject=\"CN=admin\"")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.json()["headers"].get("x-client-cert").is_none(),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn a_plain_listener_redirects_to_https() {
    let app = Upstream::echo("app").await;
    let cfg = config(
        "https_redirect = { status = 308, port = 8443 }",
        &[("app", app.addr)],
        "[[route]]\nupstream = \"app\"\n",
    );
    let gw = Gateway::with_config(cfg).start();
    let r = raw(
        main_addr(&gw),
        b"POST /p/q?x=1 HTTP/1.1\r\nHost: shop.test:80\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("location: https://shop.test:8443/p/q?x=1\r\n"),
        "{r}"
    );
    // Never forwarded.
    assert_eq!(app.count(), 0);
    // Without a host there is nowhere to redirect to.
    let r = raw(
        main_addr(&gw),
        b"GET / HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.0 400") || r.starts_with("HTTP/1.1 400"),
        "{r}"
    );
}

/// A rustls client trusting `ca` that makes a new connection (a full
/// handshake) for every request.
fn rustls_client(ca: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(weir::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

use rustls_pki_types::pem::PemObject;

/// One request on a new TLS connection to `name`; the subject of the
/// certificate served.
async fn one_tls_get(
    addr: SocketAddr,
    name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(server, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let subject = cert.subject().to_string();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", name)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    Ok(subject)
}

/// Writes `text` to `dir/name` by writing a new file and renaming it over
/// the old one, as renewal tools do.
fn replace(dir: &std::path::Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.new"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_swapped_under_load_fail_no_request_and_no_handshake() {
    let ca = Ca::new("Test CA");
    let files = usual(&ca);
    let (_app, gw) = start(TWO_CERTS, &refs(&files), "").await;
    let cfg = rustls_client(&ca.pem());
    let addr = main_addr(&gw);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failures, last, cfg) = (
                stop.clone(),
                ok.clone(),
                failures.clone(),
                last.clone(),
                cfg.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match one_tls_get(addr, "a.test", cfg.clone()).await {
                        Ok(subject) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            *last.lock().unwrap() = subject;
                        }
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                }
            })
        })
        .collect();
    // Five renewals, each a new key and certificate for a.test whose
    // common name says which one it is; the key is replaced first, so for
    // a moment the pair does not match and that load is refused.
    let dir = gw.dir().to_owned();
    for round in 1..=5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let next: Pem = ca.server(&["a.test", &format!("r{round}.a.test")], false);
        replace(&dir, "a.key", &next.key);
        replace(&dir, "a.pem", &next.cert);
        let served = eventually(Duration::from_secs(10), || async {
            let admin = tls_admin(&gw).await;
            admin["certificates"][0]["names"][1] == format!("r{round}.a.test")
        })
        .await;
        assert!(
            served,
            "renewal {round} never served:\n{}",
            gw.logs_for_failure()
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok.load(Ordering::Relaxed) >= 20, "too little load");
    let admin = tls_admin(&gw).await;
    for (reason, n) in admin["handshakes"]["failed"].as_object().unwrap() {
        assert_eq!(n, 0, "{reason}: {admin}");
    }
    // Connections made after the last swap were served the new
    // certificate (the subject is the same; the names told them apart).
    assert!(last.lock().unwrap().contains("CN=a.test"));
}

#[tokio::test]
async fn a_bad_certificate_file_is_refused_and_the_old_one_keeps_serving() {
    let ca = Ca::new("Test CA");
    let files = usual(&ca);
    let (_app, gw) = start(TWO_CERTS, &refs(&files), "").await;
    let dir = gw.dir().to_owned();
    replace(&dir, "b.pem", "not a certificate\n");
    let logged = eventually(Duration::from_secs(10), || async {
        gw.logs().iter().any(|l| {
            l.contains("certificate reload refused")
                && l.contains("b.pem")
                && l.contains("no certificate in it")
        })
    })
    .await;
    assert!(logged, "{}", gw.logs_for_failure());
    // The old certificates serve on, both of them.
    assert!(curl(&gw, "a.test", "/", &[]).await.status.success());
    assert!(curl(&gw, "api.b.test", "/", &[]).await.status.success());
    let admin = tls_admin(&gw).await;
    assert_eq!(admin["certificates"][1]["names"][0], "*.b.test", "{admin}");

    // A reload that names a file that does not exist is refused whole,
    // with the file and the reason.
    let text = std::fs::read_to_string(dir.join("weir.toml")).unwrap();
    std::fs::write(dir.join("weir.toml"), text.replace("b.pem", "gone.pem")).unwrap();
    let refused = eventually(Duration::from_secs(10), || async {
        let url = format!("http://{}/admin/config", gw.listener("admin"));
        let c = get(&client(), &url, &[]).await.json();
        c["last_attempt"]["outcome"] == "rejected"
            && c["last_attempt"]["errors"][0]
                .as_str()
                .is_some_and(|e| e.contains("gone.pem") && e.contains("cannot read"))
    })
    .await;
    assert!(refused, "{}", gw.logs_for_failure());
    assert!(curl(&gw, "api.b.test", "/", &[]).await.status.success());
}

#[tokio::test]
async fn check_reports_every_unusable_tls_file_with_its_reason() {
    let ca = Ca::new("Test CA");
    let a = ca.server(&["a.test"], false);
    let other = ca.server(&["a.test"], false);
    let old = ca.expired_server("old.test");
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("a.pem", a.cert.as_str()),
        ("other.key", other.key.as_str()),
        ("old.pem", old.cert.as_str()),
        ("old.key", old.key.as_str()),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let cfg = "[[listener]]\nname = \"https\"\naddress = \"127.0.0.1:0\"\n[listener.tls]\ncertificates = [\n  { cert = \"a.pem\", key = \"other.key\" },\n  { cert = \"old.pem\", key = \"old.key\" },\n]\n[listener.tls.client_auth]\nca = \"missing-ca.pem\"\n\n[[upstream]]\nname = \"app\"\nendpoints = [\"127.0.0.1:9\"]\n[[route]]\nupstream = \"app\"\n";
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, cfg).unwrap();
    let (passed, err) = weir_check(&path);
    assert!(!passed, "{err}");
    assert!(err.contains("3 problem(s) found"), "{err}");
    for (file, reason) in [
        ("other.key", "does not match the certificate"),
        ("old.pem", "expired at 2020-01-01"),
        ("missing-ca.pem", "cannot read"),
    ] {
        assert!(
            err.lines().any(|l| l.contains("listener `https`: TLS:")
                && l.contains(file)
                && l.contains(reason)),
            "{file}: {err}"
        );
    }
}

#[tokio::test]
async fn many_handshakes_at_once_wait_their_turn_and_all_finish() {
    let ca = Ca::new("Test CA");
    let files = usual(&ca);
    // Two handshakes at a time: the other connections wait in the
    // kernel's backlog, not dropped.
    let (_app, gw) = start(
        &format!("{TWO_CERTS}\nmax_handshakes = 2"),
        &refs(&files),
        "",
    )
    .await;
    let cfg = rustls_client(&ca.pem());
    let addr = main_addr(&gw);
    let started = Instant::now();
    let all: Vec<_> = (0..40)
        .map(|_| {
            let cfg = cfg.clone();
            tokio::spawn(async move { one_tls_get(addr, "a.test", cfg).await })
        })
        .collect();
    for t in all {
        t.await.unwrap().unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(tls_admin(&gw).await["handshakes"]["full"], 40);
}

#[tokio::test]
async fn a_route_can_require_a_client_certificate_name() {
    let ca = Ca::new("Server CA");
    let clients = Ca::new("Client CA");
    let billing = clients.client("billing", "billing.internal");
    let other = clients.client("web", "web.internal");
    let mut files = usual(&ca);
    files.extend([
        ("clients.pem", clients.pem()),
        ("billing.pem", billing.cert),
        ("billing.key", billing.key),
        ("web.pem", other.cert),
        ("web.key", other.key),
    ]);
    let app = Upstream::echo("app").await;
    // Both routes also run the basic fixture plugin, which passes on what
    // `request.client-cert` gave it.
    let routes = "[[route]]\nname = \"billing\"\nupstream = \"app\"\npath_prefix = \"/billing\"\nclient_cert_names = [\"billing.internal\", \"*.ops.internal\"]\nplugins = [{ name = \"basic\", config = { tag = \"t\" } }]\n\n[[route]]\nname = \"rest\"\nupstream = \"app\"\npath_prefix = \"/public\"\nplugins = [{ name = \"basic\", config = { tag = \"t\" } }]\n";
    let cfg = config(
        &format!(
            "\n[listener.tls]\n{TWO_CERTS}\n[listener.tls.client_auth]\nca = \"clients.pem\"\nmode = \"optional\"\n"
        ),
        &[("app", app.addr)],
        routes,
    );
    let mut b = with_plugins(Gateway::with_config(cfg), &[("basic", "basic")]);
    for (name, text) in &files {
        b = b.file(name, text.as_bytes());
    }
    let gw = b.start();
    let dir = gw.dir().to_owned();
    let path = |f: &str| dir.join(f).display().to_string();
    let with = |who: &str| {
        vec![
            "--cert".to_owned(),
            path(&format!("{who}.pem")),
            "--key".to_owned(),
            path(&format!("{who}.key")),
        ]
    };
    let status = |o: &Output| text(o).lines().last().unwrap_or("").to_owned();
    let billing_args = with("billing");
    let billing_args: Vec<&str> = billing_args.iter().map(String::as_str).collect();
    let web_args = with("web");
    let web_args: Vec<&str> = web_args.iter().map(String::as_str).collect();
    let out = curl(&gw, "a.test", "/billing/1", &billing_args).await;
    assert_eq!(status(&out), "200 2");
    // The plugin read the verified certificate through the contract.
    let body = text(&out);
    let echo: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(
        echo["headers"]["x-fx-client-cert"], "CN=billing, O=Weir tests|billing.internal",
        "{echo}"
    );
    // Another verified client, or none (optional mode lets it connect):
    // no route matches.
    assert_eq!(
        status(&curl(&gw, "a.test", "/billing/1", &web_args).await),
        "404 2"
    );
    assert_eq!(
        status(&curl(&gw, "a.test", "/billing/1", &[]).await),
        "404 2"
    );
    let out = curl(&gw, "a.test", "/public", &[]).await;
    assert_eq!(status(&out), "200 2");
    // Without a certificate the plugin sees none.
    let body = text(&out);
    let echo: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert!(echo["headers"].get("x-fx-client-cert").is_none(), "{echo}");
}

#[tokio::test]
async fn sighup_reloads_certificates_behind_a_swapped_symlink() {
    // Renewal tools such as certbot point a `live` folder (a symlink) at
    // the newest files; swapping the link changes no watched file, so
    // SIGHUP is what reloads them.
    let ca = Ca::new("Test CA");
    let v1 = ca.server(&["a.test", "v1.a.test"], false);
    let v2 = ca.server(&["a.test", "v2.a.test"], false);
    let mut files = usual(&ca);
    files.extend([
        ("v1/a.pem", v1.cert),
        ("v1/a.key", v1.key),
        ("v2/a.pem", v2.cert),
        ("v2/a.key", v2.key),
    ]);
    let app = Upstream::echo("app").await;
    let cfg = config(
        "\n[listener.tls]\ncertificates = [{ cert = \"live/a.pem\", key = \"live/a.key\" }]\n",
        &[("app", app.addr)],
        "[[route]]\nupstream = \"app\"\n\n[admin]\naddress = \"127.0.0.1:0\"\n",
    );
    let mut b = Gateway::with_config(cfg);
    for (name, text) in &files {
        b = b.file(name, text.as_bytes());
    }
    let gw = b.symlink("live", "v1").start();
    let names = |admin: serde_json::Value| admin["certificates"][0]["names"][1].clone();
    assert_eq!(names(tls_admin(&gw).await), "v1.a.test");
    let dir = gw.dir().to_owned();
    std::os::unix::fs::symlink("v2", dir.join("live.new")).unwrap();
    std::fs::rename(dir.join("live.new"), dir.join("live")).unwrap();
    gw.sighup();
    let swapped = eventually(Duration::from_secs(10), || async {
        names(tls_admin(&gw).await) == "v2.a.test"
    })
    .await;
    assert!(swapped, "{}", gw.logs_for_failure());
    let s = s_client(&gw, &["-servername", "a.test"]).await;
    assert!(s.contains("Verify return code: 0"), "{s}");
}

#[tokio::test]
async fn a_certificate_near_its_end_is_warned_about() {
    let ca = Ca::new("Test CA");
    let soon = ca.server_expiring_in("a.test", 10);
    let files = [
        ("ca.pem", ca.pem()),
        ("a.pem", soon.cert),
        ("a.key", soon.key),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (_app, gw) = start(
        "certificates = [{ cert = \"a.pem\", key = \"a.key\" }]\nexpiry_warning = \"30d\"",
        &files,
        "",
    )
    .await;
    let warned = eventually(Duration::from_secs(5), || async {
        gw.logs()
            .iter()
            .any(|l| l.contains("certificate expires soon") && l.contains("a.pem"))
    })
    .await;
    assert!(warned, "{}", gw.logs_for_failure());
    let days = tls_admin(&gw).await["certificates"][0]["expires_in_days"]
        .as_u64()
        .unwrap();
    assert!((8..=10).contains(&days), "{days}");
    // And it serves: a warning, not a refusal.
    assert!(curl(&gw, "a.test", "/", &[]).await.status.success());
}

#[tokio::test]
async fn a_reload_that_renames_the_forwarded_header_strips_the_new_name_everywhere() {
    let ca = Ca::new("Server CA");
    let clients = Ca::new("Client CA");
    let mut files = usual(&ca);
    files.push(("clients.pem", clients.pem()));
    let plain = "\n[[listener]]\nname = \"plain\"\naddress = \"127.0.0.1:0\"\n";
    let tls = |header: &str| {
        format!(
            "{TWO_CERTS}\n[listener.tls.client_auth]\nca = \"clients.pem\"\nmode = \"optional\"\nforward_header = \"{header}\""
        )
    };
    let (_app, gw) = start(&tls("x-cert-a"), &refs(&files), plain).await;
    let path = gw.dir().join("weir.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("x-cert-a", "x-cert-b")).unwrap();
    let url = format!("http://{}/", gw.listener("plain"));
    let stripped = eventually(Duration::from_secs(10), || async {
        let r = get(&client(), &url, &[("x-cert-b", "subject=\"CN=admin\"")]).await;
        r.json()["headers"].get("x-cert-b").is_none()
    })
    .await;
    assert!(stripped, "{}", gw.logs_for_failure());
}
