//! A TLS listener's serving state, made from its `[listener.tls]`: the
//! loaded certificates and the choice among them by SNI, the client
//! certificate verifier, and the rustls `ServerConfig` (versions, ALPN
//! `h2` and `http/1.1`, session resumption). A reload or a changed
//! certificate file makes a new [`ServerTls`] and swaps it in whole; a
//! handshake under way keeps the one it started with. What must outlive
//! a swap for resumption to keep working (the ticket keys and the session
//! cache) is made once per listener, in [`Resumption`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::certs::{self, CertInfo, FileError, Loaded};
use crate::config::{ListenerTls, MinVersion, UnknownSni};

/// Sessions a listener remembers for TLS 1.2 session-id resumption and
/// TLS 1.3 stateful tickets, over all its connections (about 100 bytes
/// each); beyond it the oldest go.
pub const SESSION_CACHE: usize = 16_384;

/// CA certificates in one client-CA bundle.
pub const MAX_CA_CERTS: usize = 1024;

/// What resumption needs across swaps of a listener's certificates: the
/// ticket keys (rotated by rustls every 6 hours, the previous key still
/// accepted) and the session cache.
#[derive(Debug, Clone)]
pub struct Resumption {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<dyn StoresServerSessions>,
}

impl Resumption {
    pub fn new() -> Result<Resumption, rustls::Error> {
        Ok(Resumption {
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()?,
            cache: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
        })
    }
}

/// The certificates of a listener and how one is chosen.
#[derive(Debug)]
pub struct Certs {
    all: Vec<Loaded>,
    /// Exact DNS names, lower-case, to an index of `all`.
    exact: HashMap<String, usize>,
    /// `*.example.com` as `example.com`: matches one more label.
    wildcard: HashMap<String, usize>,
}

impl Certs {
    fn new(all: Vec<Loaded>) -> Certs {
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (i, l) in all.iter().enumerate() {
            for name in &l.info.names {
                // The first certificate to name a host serves it.
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        Certs {
            all,
            exact,
            wildcard,
        }
    }

    /// The certificate for a server name, if one names it: an exact name
    /// first, then a wildcard covering its first label.
    pub fn pick(&self, sni: &str) -> Option<&Loaded> {
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        let i = self.exact.get(&sni).or_else(|| {
            let (_, parent) = sni.split_once('.')?;
            self.wildcard.get(parent)
        })?;
        Some(&self.all[*i])
    }

    /// The certificate served when the SNI names none.
    pub fn default_cert(&self) -> &Loaded {
        &self.all[0]
    }

    pub fn infos(&self) -> impl Iterator<Item = &CertInfo> {
        self.all.iter().map(|l| &l.info)
    }
}

/// rustls asks this for the certificate of each handshake.
#[derive(Debug)]
struct Resolver(Arc<Certs>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Refusal of unknown names happens before (`accept`), with the
        // right alert; here an unknown name gets the default.
        let l = match hello.server_name() {
            Some(name) => self.0.pick(name).unwrap_or(self.0.default_cert()),
            None => self.0.default_cert(),
        };
        Some(l.key.clone())
    }
}

/// What a TLS listener serves with, swapped whole on reload.
#[derive(Debug)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub certs: Arc<Certs>,
    pub refuse_unknown: bool,
    /// The header that carries a verified client certificate upstream.
    pub forward_header: Option<http::HeaderName>,
    /// The client CA bundle's certificates, for the admin view.
    pub client_cas: Vec<CertInfo>,
}

/// The problems with a listener's TLS files, every one of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct TlsErrors(pub Vec<FileError>);

impl ServerTls {
    /// Loads every file `cfg` names and makes the serving state; reports
    /// every unusable file, not only the first.
    pub fn load(
        cfg: &ListenerTls,
        resumption: &Resumption,
        provider: &Arc<CryptoProvider>,
        now: SystemTime,
    ) -> Result<ServerTls, TlsErrors> {
        let mut errors = Vec::new();
        let mut loaded = Vec::new();
        for pair in &cfg.certificates {
            match certs::load_pair(&pair.cert, &pair.key, provider, now) {
                Ok(l) => loaded.push(l),
                Err(e) => errors.push(e),
            }
        }
        let mut client_cas = Vec::new();
        let verifier = match &cfg.client_auth {
            None => None,
            Some(auth) => match client_verifier(&auth.ca, auth.required, provider) {
                Ok((v, infos)) => {
                    client_cas = infos;
                    Some(v)
                }
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(TlsErrors(errors));
        }
        let certs = Arc::new(Certs::new(loaded));
        let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| {
                TlsErrors(vec![FileError {
                    path: cfg.certificates[0].cert.clone(),
                    reason: format!("the crypto provider refuses these versions: {e}"),
                }])
            })?;
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(Resolver(certs.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if cfg.session_resumption {
            config.ticketer = resumption.ticketer.clone();
            config.session_storage = resumption.cache.clone();
        } else {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(ServerTls {
            config: Arc::new(config),
            certs,
            refuse_unknown: cfg.unknown_sni == UnknownSni::Refuse,
            forward_header: cfg
                .client_auth
                .as_ref()
                .and_then(|a| a.forward_header.as_deref())
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            client_cas,
        })
    }

    /// Certificates that expire within `within` of `now`.
    pub fn expiring(
        &self,
        now: SystemTime,
        within: std::time::Duration,
    ) -> impl Iterator<Item = &CertInfo> {
        self.certs
            .infos()
            .filter(move |i| i.expires_in(now) <= within)
    }
}

/// A verifier of client certificates against the CA bundle at `ca`.
fn client_verifier(
    ca: &std::path::Path,
    required: bool,
    provider: &Arc<CryptoProvider>,
) -> Result<
    (
        Arc<dyn rustls::server::danger::ClientCertVerifier>,
        Vec<CertInfo>,
    ),
    FileError,
> {
    let certs = certs::read_certs(ca, "CA bundle", MAX_CA_CERTS)?;
    let mut roots = RootCertStore::empty();
    let mut infos = Vec::new();
    for (i, c) in certs.into_iter().enumerate() {
        infos.push(CertInfo::parse(&c, ca)?);
        roots.add(c).map_err(|e| FileError {
            path: ca.to_owned(),
            reason: format!("certificate {} is not a usable CA: {e}", i + 1),
        })?;
    }
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    let v = builder.build().map_err(|e| FileError {
        path: ca.to_owned(),
        reason: format!("cannot verify client certificates with it: {e}"),
    })?;
    Ok((v, infos))
}
