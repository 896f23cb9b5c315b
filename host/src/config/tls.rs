//! The TLS sections of a listener: `[listener.tls]` (certificates, the
//! choice for an unknown SNI, the lowest version, handshake bounds,
//! session resumption, client certificates) and `https_redirect` on a
//! plain listener. Only the file format and its bounds live here; whether
//! the files are usable is checked by `crate::tls` when it loads them
//! (start-up, `weir check`, reload).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{At, Problem, Validator, field};

/// Bounds and defaults of the TLS settings (docs/tls.md lists them).
pub mod limits {
    use std::time::Duration;

    /// Certificate chains on one listener (one per set of names).
    pub const MAX_CERTIFICATES: usize = 256;
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Handshakes one listener runs at once, over all workers; more
    /// connections wait in the kernel's accept queue. A full handshake
    /// costs about a millisecond of CPU, so this is far more than two
    /// cores finish in the default timeout, and bounds the memory of
    /// clients that start handshakes and stall.
    pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;
    pub const MAX_HANDSHAKES: usize = 65_536;
    pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86_400);
    pub const MAX_EXPIRY_WARNING: Duration = Duration::from_secs(365 * 86_400);
}

/// `[listener.tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub certificates: Vec<RawCertPair>,
    pub unknown_sni: Option<String>,
    pub min_version: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub handshake_timeout: Option<Duration>,
    pub max_handshakes: Option<usize>,
    pub session_resumption: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub expiry_warning: Option<Duration>,
    pub client_auth: Option<RawClientAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    pub ca: String,
    pub mode: Option<String>,
    pub forward_header: Option<String>,
}

/// `https_redirect = { status = 308, port = 443 }` on a plain listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub status: Option<u16>,
    pub port: Option<u16>,
}

/// A listener's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Chains and keys; the first is served to clients whose SNI names
    /// none of them (unless `unknown_sni` refuses).
    pub certificates: Vec<CertPair>,
    pub unknown_sni: UnknownSni,
    pub min_version: MinVersion,
    /// From the first byte of the connection to the end of the handshake.
    pub handshake_timeout: Duration,
    pub max_handshakes: usize,
    /// Session tickets and TLS 1.3 resumption.
    pub session_resumption: bool,
    /// A certificate expiring within this long is warned about.
    pub expiry_warning: Duration,
    pub client_auth: Option<ClientAuth>,
}

/// A certificate chain file and its private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a client whose SNI names no certificate (or that sends none) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSni {
    /// The first certificate.
    Default,
    /// The handshake is refused (`unrecognized_name`, or
    /// `handshake_failure` without SNI).
    Refuse,
}

/// The lowest TLS version a listener accepts (TLS 1.3 is always offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// Client certificates on a listener (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// The CA bundle client certificates must chain to.
    pub ca: PathBuf,
    /// Whether a client without a certificate is refused.
    pub required: bool,
    /// The request header (lower-case) that carries the verified
    /// certificate's subject and names to the upstream; whatever a
    /// client sends under it is removed first.
    pub forward_header: Option<String>,
}

/// A plain listener that answers every request with a redirect to HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsRedirect {
    /// 301 or 308 (the default: keeps the method and body).
    pub status: u16,
    /// The HTTPS port, left out of the location when 443.
    pub port: u16,
}

impl Validator<'_> {
    pub(super) fn listener_tls(&mut self, raw: RawTls, at: &At) -> ListenerTls {
        let at = field(at, "tls");
        let base = self.base();
        if raw.certificates.is_empty() || raw.certificates.len() > limits::MAX_CERTIFICATES {
            self.report(
                &field(&at, "certificates"),
                Problem::OutOfRange {
                    field: "certificates",
                    rule: format!(
                        "a list of 1 to {} {{ cert, key }} pairs: a TLS listener needs a \
                         certificate to serve",
                        limits::MAX_CERTIFICATES
                    ),
                },
            );
        }
        let certificates = raw
            .certificates
            .into_iter()
            .map(|p| CertPair {
                cert: base.join(p.cert),
                key: base.join(p.key),
            })
            .collect();
        let unknown_sni = match raw.unknown_sni.as_deref() {
            None | Some("default") => UnknownSni::Default,
            Some("refuse") => UnknownSni::Refuse,
            Some(other) => {
                self.report(
                    &field(&at, "unknown_sni"),
                    Problem::Invalid {
                        field: "unknown_sni",
                        reason: format!(
                            "`{other}` is neither `default` (serve the first certificate) nor \
                             `refuse` (fail the handshake)"
                        ),
                    },
                );
                UnknownSni::Default
            }
        };
        let min_version = match raw.min_version.as_deref() {
            None | Some("1.2") => MinVersion::Tls12,
            Some("1.3") => MinVersion::Tls13,
            Some(other) => {
                self.report(
                    &field(&at, "min_version"),
                    Problem::Invalid {
                        field: "min_version",
                        reason: format!(
                            "`{other}` is not a version Weir speaks: \"1.2\" or \"1.3\" (TLS 1.0 \
                             and 1.1 are not supported)"
                        ),
                    },
                );
                MinVersion::Tls12
            }
        };
        let handshake_timeout = raw
            .handshake_timeout
            .unwrap_or(limits::DEFAULT_HANDSHAKE_TIMEOUT);
        if handshake_timeout.is_zero() || handshake_timeout > limits::MAX_HANDSHAKE_TIMEOUT {
            self.report(
                &field(&at, "handshake_timeout"),
                Problem::OutOfRange {
                    field: "handshake_timeout",
                    rule: format!(
                        "more than 0 and at most {:?}",
                        limits::MAX_HANDSHAKE_TIMEOUT
                    ),
                },
            );
        }
        let max_handshakes = self.range(
            &at,
            "max_handshakes",
            raw.max_handshakes.unwrap_or(limits::DEFAULT_MAX_HANDSHAKES),
            1,
            limits::MAX_HANDSHAKES,
        );
        let expiry_warning = raw.expiry_warning.unwrap_or(limits::DEFAULT_EXPIRY_WARNING);
        if expiry_warning > limits::MAX_EXPIRY_WARNING {
            self.report(
                &field(&at, "expiry_warning"),
                Problem::OutOfRange {
                    field: "expiry_warning",
                    rule: format!("at most {:?}", limits::MAX_EXPIRY_WARNING),
                },
            );
        }
        let client_auth = raw.client_auth.map(|c| self.client_auth(c, &at, &base));
        ListenerTls {
            certificates,
            unknown_sni,
            min_version,
            handshake_timeout,
            max_handshakes,
            session_resumption: raw.session_resumption.unwrap_or(true),
            expiry_warning,
            client_auth,
        }
    }

    fn client_auth(&mut self, raw: RawClientAuth, at: &At, base: &Path) -> ClientAuth {
        let at = field(at, "client_auth");
        let required = match raw.mode.as_deref() {
            None | Some("required") => true,
            Some("optional") => false,
            Some(other) => {
                self.report(
                    &field(&at, "mode"),
                    Problem::Invalid {
                        field: "mode",
                        reason: format!(
                            "`{other}` is neither `required` (refuse clients without a valid \
                             certificate) nor `optional` (verify one when it is given)"
                        ),
                    },
                );
                true
            }
        };
        let forward_header = raw.forward_header.map(|h| {
            let lower = h.to_ascii_lowercase();
            if http::HeaderName::from_bytes(lower.as_bytes()).is_err()
                || crate::framing::is_framing_lookalike(&lower)
            {
                self.report(
                    &field(&at, "forward_header"),
                    Problem::Invalid {
                        field: "forward_header",
                        reason: format!("`{h}` is not a header name Weir may set"),
                    },
                );
            }
            lower
        });
        ClientAuth {
            ca: base.join(raw.ca),
            required,
            forward_header,
        }
    }

    pub(super) fn https_redirect(&mut self, raw: RawRedirect, at: &At) -> HttpsRedirect {
        let at = field(at, "https_redirect");
        let status = raw.status.unwrap_or(308);
        if status != 301 && status != 308 {
            self.report(
                &field(&at, "status"),
                Problem::Invalid {
                    field: "status",
                    reason: format!(
                        "{status} is not a permanent redirect: 308 (keeps the method and body) \
                         or 301"
                    ),
                },
            );
        }
        let port = raw.port.unwrap_or(443);
        if port == 0 {
            self.report(
                &field(&at, "port"),
                Problem::OutOfRange {
                    field: "port",
                    rule: "a port from 1 to 65535".into(),
                },
            );
        }
        HttpsRedirect { status, port }
    }
}
