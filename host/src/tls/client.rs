//! The client side of TLS, for upstreams (`tls` on an `[[upstream]]`):
//! whom to trust (Mozilla's roots from webpki-roots, compiled in so a
//! gateway trusts the same set on every machine; or only the CA bundle
//! the configuration names), the name to send and verify (the
//! endpoint's host name, or an explicit `sni`), an optional client
//! certificate, and, only when a key whose name says so is set, no
//! verification at all. ALPN offers what the upstream's `protocol` says
//! (`http/1.1`, `h2`, or both for `auto`). rustls keeps sessions per server name, so reconnections to
//! an endpoint resume.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::certs::{self, FileError};
use super::server::{MAX_CA_CERTS, TlsErrors};
use crate::config::UpstreamTls;

/// An upstream's TLS client settings, ready to connect with.
#[derive(Debug)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    /// The name sent and verified instead of each endpoint's host.
    sni: Option<String>,
}

impl ClientTls {
    /// Loads the files `cfg` names; reports every unusable one.
    pub fn load(cfg: &UpstreamTls, provider: &Arc<CryptoProvider>) -> Result<ClientTls, TlsErrors> {
        let mut errors = Vec::new();
        let mut roots = RootCertStore::empty();
        match &cfg.ca {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(ca) => match certs::read_certs(ca, "CA bundle", MAX_CA_CERTS) {
                Ok(list) => {
                    for (i, c) in list.into_iter().enumerate() {
                        if let Err(e) = roots.add(c) {
                            errors.push(FileError {
                                path: ca.clone(),
                                reason: format!("certificate {} is not a usable CA: {e}", i + 1),
                            });
                        }
                    }
                }
                Err(e) => errors.push(e),
            },
        }
        let client_auth = match &cfg.client_cert {
            None => None,
            Some(pair) => {
                let chain = certs::read_certs(&pair.cert, "certificate chain", certs::MAX_CHAIN);
                let key = certs::read_key(&pair.key);
                match (chain, key) {
                    (Ok(chain), Ok(key)) => Some((chain, key)),
                    (chain, key) => {
                        errors.extend(chain.err());
                        errors.extend(key.err());
                        None
                    }
                }
            }
        };
        if !errors.is_empty() {
            return Err(TlsErrors(errors));
        }
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| general(cfg, format!("the crypto provider refuses: {e}")))?;
        let builder = if cfg.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
        } else {
            builder.with_root_certificates(roots)
        };
        let mut config = match client_auth {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let path = cfg
                    .client_cert
                    .as_ref()
                    .map(|p| p.key.clone())
                    .unwrap_or_default();
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    TlsErrors(vec![FileError {
                        path,
                        reason: format!("not a usable client certificate and key: {e}"),
                    }])
                })?
            }
        };
        config.alpn_protocols = if cfg.alpn.is_empty() {
            vec![b"http/1.1".to_vec()]
        } else {
            cfg.alpn.clone()
        };
        Ok(ClientTls {
            config: Arc::new(config),
            sni: cfg.sni.clone(),
        })
    }

    /// The server name for an endpoint written as `host`: the `sni`
    /// setting if there is one, else the host (a DNS name, or an IP
    /// address, which is verified against the certificate's IP names and
    /// sends no SNI).
    pub fn server_name(&self, host: &str) -> Option<ServerName<'static>> {
        let name = self.sni.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_owned()).ok()
    }
}

fn general(cfg: &UpstreamTls, reason: String) -> TlsErrors {
    TlsErrors(vec![FileError {
        path: cfg.ca.clone().unwrap_or_default(),
        reason,
    }])
}

/// `insecure_skip_verify = true`: any certificate, any name. Signatures
/// are still checked, so the handshake itself is sound; who is on the
/// other end is not.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
