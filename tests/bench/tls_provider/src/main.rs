//! What TLS 1.3 costs in CPU time with rustls's two crypto providers,
//! aws-lc-rs (Weir's) and ring: a full handshake, a resumed handshake, and
//! bulk encryption and decryption of 16 KiB records with each AEAD.
//!
//! Client and server talk in memory (no sockets, no HTTP): the driver hands
//! each side's records to the other. Each side's CPU time is measured on
//! its own with the thread CPU clock, around batches of work on one side
//! only (a batch of handshakes advances all of them one flight at a time),
//! so the clock's own cost is paid twice per batch, not per record.
//! Rounds alternate the providers; every figure is the median over the
//! rounds with the range, after one warm-up round that is not counted.
//!
//! Usage: tls-provider [--rounds N] [--handshakes N] [--records N]
//! (tests/bench/README.md, "Crypto provider", has the command and a run).

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::{
    ClientConfig, ClientConnection, Connection, HandshakeKind, RootCertStore, ServerConfig,
    ServerConnection, SignatureScheme, SupportedCipherSuite,
};

/// One provider and the pieces taken from it.
struct Provider {
    name: &'static str,
    base: fn() -> CryptoProvider,
    x25519: &'static dyn SupportedKxGroup,
    /// In the order of [`SUITES`].
    suites: [SupportedCipherSuite; 3],
    ticketer: fn() -> Result<Arc<dyn ProducesTickets>, rustls::Error>,
}

const SUITES: [&str; 3] = ["AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305"];

/// The suite of the handshakes by default, TLS_AES_256_GCM_SHA384 (its
/// key schedule hashes with SHA-384): the one the benchmark's OpenSSL
/// clients (wrk, openssl s_time) negotiate with all three proxies.
/// `--handshake-suite` picks another of [`SUITES`].
const HANDSHAKE_SUITE: usize = 1;

/// Plaintext bytes per record: the TLS maximum, what a bulk transfer uses.
const RECORD: usize = 16 * 1024;

fn providers() -> [Provider; 2] {
    use rustls::crypto::{aws_lc_rs, ring};
    [
        Provider {
            name: "aws-lc-rs",
            base: aws_lc_rs::default_provider,
            x25519: aws_lc_rs::kx_group::X25519,
            suites: [
                aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
                aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
                aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ],
            ticketer: aws_lc_rs::Ticketer::new,
        },
        Provider {
            name: "ring",
            // Deprecated for its lack of post-quantum key exchange; both
            // providers are measured with X25519 here.
            #[allow(deprecated)]
            base: ring::default_provider,
            x25519: ring::kx_group::X25519,
            suites: [
                ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
                ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
                ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ],
            ticketer: ring::Ticketer::new,
        },
    ]
}

/// Nanoseconds this thread has run on a CPU (time spent waiting for one
/// does not count, as with the benchmark's schedstat figures).
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A CA and a server certificate it signed for `localhost`, both ECDSA
/// P-256 (rcgen); the server sends the leaf, the client trusts the CA.
struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn pki() -> Pki {
    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tls-provider CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate_for(alg).unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca: ca.der().clone(),
        leaf: leaf.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}

/// `p` with one cipher suite and X25519 only: the key exchange every
/// OpenSSL client of the benchmark uses.
fn crypto(p: &Provider, suite: SupportedCipherSuite) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![suite],
        kx_groups: vec![p.x25519],
        ..(p.base)()
    })
}

/// A server set up as Weir's TLS listeners are (host/src/tls/server.rs):
/// TLS 1.3, ALPN h2 and http/1.1, session tickets from the provider's
/// ticketer and a session cache.
fn server_config(p: &Provider, suite: SupportedCipherSuite, pki: &Pki) -> Arc<ServerConfig> {
    let mut c = ServerConfig::builder_with_provider(crypto(p, suite))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.leaf.clone()],
            PrivateKeyDer::Pkcs8(pki.key.clone_key()),
        )
        .unwrap();
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    c.ticketer = (p.ticketer)().unwrap();
    c.session_storage = ServerSessionMemoryCache::new(16_384);
    Arc::new(c)
}

/// A client that verifies the server's certificate against the CA.
fn client_config(
    p: &Provider,
    suite: SupportedCipherSuite,
    pki: &Pki,
    resumption: Resumption,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let mut c = ClientConfig::builder_with_provider(crypto(p, suite))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c.resumption = resumption;
    Arc::new(c)
}

/// Hands `inbox` to `conn` as if read from its socket.
fn deliver(conn: &mut Connection, inbox: &mut Vec<u8>) {
    let mut rd = &inbox[..];
    while !rd.is_empty() {
        conn.read_tls(&mut rd).unwrap();
        conn.process_new_packets().unwrap();
    }
    inbox.clear();
}

/// Everything `conn` has to send, appended to `out`.
fn flush(conn: &mut Connection, out: &mut Vec<u8>) {
    while conn.wants_write() {
        conn.write_tls(out).unwrap();
    }
}

/// One handshake per client config, all at once, a flight at a time:
/// each side's steps over all the connections are timed together.
/// Returns the client's and the server's CPU nanoseconds, from creating
/// the connections to dropping them (the server's tickets delivered).
/// Panics unless every handshake was of kind `want` on both sides.
fn handshakes(
    clients: &[Arc<ClientConfig>],
    server: &Arc<ServerConfig>,
    want: HandshakeKind,
) -> (u64, u64) {
    let name = ServerName::try_from("localhost").unwrap();
    let n = clients.len();
    let mut to_server: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(4096)).collect();
    let mut to_client: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(4096)).collect();

    let t = cpu_ns();
    let mut cs: Vec<Connection> = clients
        .iter()
        .map(|c| Connection::Client(ClientConnection::new(c.clone(), name.clone()).unwrap()))
        .collect();
    for (c, out) in cs.iter_mut().zip(&mut to_server) {
        flush(c, out);
    }
    let mut client_ns = cpu_ns() - t;

    let t = cpu_ns();
    let mut ss: Vec<Connection> = (0..n)
        .map(|_| Connection::Server(ServerConnection::new(server.clone()).unwrap()))
        .collect();
    let mut server_ns = cpu_ns() - t;

    while to_server.iter().any(|b| !b.is_empty()) {
        let t = cpu_ns();
        for ((s, inbox), out) in ss.iter_mut().zip(&mut to_server).zip(&mut to_client) {
            deliver(s, inbox);
            flush(s, out);
        }
        server_ns += cpu_ns() - t;
        let t = cpu_ns();
        for ((c, inbox), out) in cs.iter_mut().zip(&mut to_client).zip(&mut to_server) {
            deliver(c, inbox);
            flush(c, out);
        }
        client_ns += cpu_ns() - t;
    }
    for conn in cs.iter().chain(&ss) {
        assert!(!conn.is_handshaking(), "a handshake did not finish");
        assert_eq!(
            conn.handshake_kind(),
            Some(want),
            "not the kind of handshake measured"
        );
    }
    let t = cpu_ns();
    drop(ss);
    server_ns += cpu_ns() - t;
    let t = cpu_ns();
    drop(cs);
    client_ns += cpu_ns() - t;
    (client_ns, server_ns)
}

/// A connected pair, handshake done (not timed).
fn connect(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> (Connection, Connection) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = Connection::Client(ClientConnection::new(client.clone(), name).unwrap());
    let mut s = Connection::Server(ServerConnection::new(server.clone()).unwrap());
    let (mut to_s, mut to_c) = (Vec::new(), Vec::new());
    flush(&mut c, &mut to_s);
    while !to_s.is_empty() {
        deliver(&mut s, &mut to_s);
        flush(&mut s, &mut to_c);
        deliver(&mut c, &mut to_c);
        flush(&mut c, &mut to_s);
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

/// `records` full records from client to server: the client's CPU
/// nanoseconds to seal them (plaintext in, TLS bytes out) and the
/// server's to open them (TLS bytes in, plaintext out). `wire` holds the
/// TLS bytes: the caller's, allocated and touched once, so that no round
/// pays page faults for it.
fn bulk(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    records: usize,
    wire: &mut Vec<u8>,
) -> (u64, u64) {
    let (mut c, mut s) = connect(client, server);
    let plain = vec![0xa5u8; RECORD];
    wire.clear();
    let mut sink = vec![0u8; 2 * RECORD];

    let t = cpu_ns();
    for _ in 0..records {
        c.writer().write_all(&plain).unwrap();
        flush(&mut c, wire);
    }
    let seal_ns = cpu_ns() - t;
    // 5 bytes of header, 1 of inner content type, 16 of AEAD tag.
    assert_eq!(
        wire.len(),
        records * (RECORD + 22),
        "not one record per write"
    );

    let t = cpu_ns();
    let mut got = 0;
    let mut rd = &wire[..];
    while !rd.is_empty() {
        s.read_tls(&mut rd).unwrap();
        s.process_new_packets().unwrap();
        loop {
            match s.reader().read(&mut sink) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    let open_ns = cpu_ns() - t;
    assert_eq!(got, records * RECORD);
    (seal_ns, open_ns)
}

/// CPU nanoseconds of the two costly steps of a server's handshake, each
/// over `n` runs: an X25519 exchange as a server makes it (a key pair, and
/// the agreement with the client's share), in every handshake, full or
/// resumed; and an ECDSA P-256 signature (CertificateVerify), in full
/// handshakes only.
fn primitives(p: &Provider, pki: &Pki, n: usize) -> (f64, f64) {
    let client_share = p.x25519.start().unwrap().pub_key().to_vec();
    let t = cpu_ns();
    for _ in 0..n {
        std::hint::black_box(p.x25519.start_and_complete(&client_share).unwrap());
    }
    let kx = (cpu_ns() - t) as f64 / n as f64;

    let key = (p.base)()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(pki.key.clone_key()))
        .unwrap();
    let signer = key
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .unwrap();
    // What TLS 1.3 signs: 64 spaces, the context string, a zero byte and
    // the transcript hash (SHA-384 here).
    let mut message = vec![0x20u8; 64];
    message.extend_from_slice(b"TLS 1.3, server CertificateVerify\0");
    message.extend_from_slice(&[0x5a; 48]);
    let t = cpu_ns();
    for _ in 0..n {
        std::hint::black_box(signer.sign(&message).unwrap());
    }
    let sign = (cpu_ns() - t) as f64 / n as f64;
    (kx, sign)
}

/// The figures of one round for one provider, per operation: handshakes
/// and primitives in nanoseconds, bulk in MB (10^6 bytes) per CPU second.
#[derive(Default, Clone)]
struct Round {
    kx: f64,
    sign: f64,
    full_server: f64,
    full_client: f64,
    unticketed_server: f64,
    resumed_server: f64,
    resumed_client: f64,
    seal: [f64; 3],
    open: [f64; 3],
}

/// What one provider keeps across rounds.
struct Bench<'a> {
    provider: &'a Provider,
    pki: &'a Pki,
    full_clients: Vec<Arc<ClientConfig>>,
    resumed_clients: Vec<Arc<ClientConfig>>,
    server: Arc<ServerConfig>,
    /// The same server sending no session tickets.
    no_tickets: Arc<ServerConfig>,
    bulk: Vec<(Arc<ClientConfig>, Arc<ServerConfig>)>,
}

impl<'a> Bench<'a> {
    fn new(p: &'a Provider, pki: &'a Pki, handshakes_per_batch: usize, suite: usize) -> Bench<'a> {
        let suite = p.suites[suite];
        let server = server_config(p, suite, pki);
        let mut no_tickets = (*server).clone();
        no_tickets.send_tls13_tickets = 0;
        let full = client_config(p, suite, pki, Resumption::disabled());
        // One config (and ticket store) per connection of a batch: each
        // full handshake leaves two tickets and each resumption uses one
        // and brings two, so every client always has one to offer.
        let resumed: Vec<_> = (0..handshakes_per_batch)
            .map(|_| client_config(p, suite, pki, Resumption::in_memory_sessions(4)))
            .collect();
        handshakes(&resumed, &server, HandshakeKind::Full);
        Bench {
            provider: p,
            pki,
            full_clients: vec![full; handshakes_per_batch],
            resumed_clients: resumed,
            server,
            no_tickets: Arc::new(no_tickets),
            bulk: p
                .suites
                .iter()
                .map(|s| {
                    let c = client_config(p, *s, pki, Resumption::disabled());
                    (c, server_config(p, *s, pki))
                })
                .collect(),
        }
    }

    fn round(&self, batches: usize, records: usize, wire: &mut Vec<u8>) -> Round {
        let mut r = Round::default();
        let n = (batches * self.full_clients.len()) as f64;
        (r.kx, r.sign) = primitives(self.provider, self.pki, n as usize);
        for _ in 0..batches {
            let (c, s) = handshakes(&self.full_clients, &self.server, HandshakeKind::Full);
            r.full_client += c as f64 / n;
            r.full_server += s as f64 / n;
            let (c, s) = handshakes(&self.resumed_clients, &self.server, HandshakeKind::Resumed);
            r.resumed_client += c as f64 / n;
            r.resumed_server += s as f64 / n;
            let (_, s) = handshakes(&self.full_clients, &self.no_tickets, HandshakeKind::Full);
            r.unticketed_server += s as f64 / n;
        }
        let bytes = (records * RECORD) as f64;
        for (i, (c, s)) in self.bulk.iter().enumerate() {
            let (seal, open) = bulk(c, s, records, wire);
            r.seal[i] = bytes / 1e6 / (seal as f64 / 1e9);
            r.open[i] = bytes / 1e6 / (open as f64 / 1e9);
        }
        r
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn spread(xs: &[f64], digits: usize) -> String {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.d$} [{:.d$}-{:.d$}]", median(xs), lo, hi, d = digits)
}

/// A version from the lock file this binary was built with.
fn version(krate: &str) -> &'static str {
    let lock = include_str!("../Cargo.lock");
    let head = format!("name = \"{krate}\"\nversion = \"");
    lock.find(&head)
        .map(|i| {
            let rest = &lock[i + head.len()..];
            &rest[..rest.find('"').unwrap_or(0)]
        })
        .unwrap_or("?")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} takes a positive number")),
        None => default,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = arg(&args, "--rounds", 9).max(1);
    let per_batch = arg(&args, "--handshakes", 100).max(1);
    let records = arg(&args, "--records", 1024).max(1);
    let suite = match args.iter().position(|a| a == "--handshake-suite") {
        Some(i) => args
            .get(i + 1)
            .and_then(|name| SUITES.iter().position(|s| s == name))
            .unwrap_or_else(|| panic!("--handshake-suite takes one of {SUITES:?}")),
        None => HANDSHAKE_SUITE,
    };
    let batches = 4;

    let pki = pki();
    let providers = providers();
    let benches: Vec<Bench> = providers
        .iter()
        .map(|p| Bench::new(p, &pki, per_batch, suite))
        .collect();
    let mut wire = vec![0u8; records * (RECORD + 64)];
    // One warm-up round, not counted; then the providers alternate,
    // each round starting with the other one.
    for b in &benches {
        b.round(1, records, &mut wire);
    }
    let mut all: Vec<Vec<Round>> = vec![Vec::new(); benches.len()];
    for round in 0..rounds {
        for k in 0..benches.len() {
            let i = (k + round) % benches.len();
            all[i].push(benches[i].round(batches, records, &mut wire));
        }
    }

    println!(
        "rustls {} | aws-lc-rs {} (aws-lc-sys {}) | ring {} | {}",
        version("rustls"),
        version("aws-lc-rs"),
        version("aws-lc-sys"),
        version("ring"),
        cpu_model()
    );
    println!(
        "TLS 1.3, ECDSA P-256 server certificate (rcgen, CA-signed, verified by the client), \
         X25519, handshakes with {:?}; server as Weir's listeners (2 tickets per \
         handshake, session cache, ALPN h2/http1.1); resumption with a ticket, psk_dhe_ke \
         (an X25519 exchange again).\nThread CPU time; median of {rounds} rounds [min-max], \
         ring / aws-lc-rs paired by round; per round {} full and {} resumed handshakes, \
         {records} records of 16 KiB per AEAD.",
        providers[0].suites[suite].suite(),
        batches * per_batch,
        batches * per_batch
    );
    println!();

    type Pick = fn(&Round) -> f64;
    let rows: Vec<(String, Pick, usize)> = {
        let mut rows: Vec<(String, Pick, usize)> = vec![
            (
                "X25519 exchange, server side (us)".into(),
                |r| r.kx / 1e3,
                1,
            ),
            ("ECDSA P-256 signature (us)".into(), |r| r.sign / 1e3, 1),
            (
                "full handshake, server CPU (us)".into(),
                |r| r.full_server / 1e3,
                1,
            ),
            (
                "full handshake, client CPU (us)".into(),
                |r| r.full_client / 1e3,
                1,
            ),
            (
                "full handshakes per server CPU-second".into(),
                |r| 1e9 / r.full_server,
                0,
            ),
            (
                "full handshake sending no tickets, server CPU (us)".into(),
                |r| r.unticketed_server / 1e3,
                1,
            ),
            (
                "resumed handshake, server CPU (us)".into(),
                |r| r.resumed_server / 1e3,
                1,
            ),
            (
                "resumed handshake, client CPU (us)".into(),
                |r| r.resumed_client / 1e3,
                1,
            ),
            (
                "resumed handshakes per server CPU-second".into(),
                |r| 1e9 / r.resumed_server,
                0,
            ),
            (
                "resumed / full, server".into(),
                |r| r.resumed_server / r.full_server,
                2,
            ),
        ];
        let seal: [Pick; 3] = [|r| r.seal[0], |r| r.seal[1], |r| r.seal[2]];
        let open: [Pick; 3] = [|r| r.open[0], |r| r.open[1], |r| r.open[2]];
        for i in 0..3 {
            rows.push((format!("{} seal, MB per CPU-second", SUITES[i]), seal[i], 0));
            rows.push((format!("{} open, MB per CPU-second", SUITES[i]), open[i], 0));
        }
        rows
    };

    let mut table = vec![vec![
        "operation".to_owned(),
        providers[0].name.to_owned(),
        providers[1].name.to_owned(),
        format!("{} / {}", providers[1].name, providers[0].name),
    ]];
    for (label, pick, digits) in &rows {
        let a: Vec<f64> = all[0].iter().map(pick).collect();
        let b: Vec<f64> = all[1].iter().map(pick).collect();
        // Paired by round, as the benchmark's ratios are.
        let ratio: Vec<f64> = a.iter().zip(&b).map(|(a, b)| b / a).collect();
        table.push(vec![
            label.clone(),
            spread(&a, *digits),
            spread(&b, *digits),
            format!("{:.2}x", median(&ratio)),
        ]);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for (n, row) in table.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
        if n == 0 {
            let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            println!("{}", rules.join("  "));
        }
    }
}
