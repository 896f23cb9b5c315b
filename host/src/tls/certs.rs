//! Certificate chains, private keys and CA bundles from PEM files, checked
//! before anything serves them: the chain parses, the key is one the
//! crypto provider can sign with and matches the leaf's public key, and
//! the leaf is valid now. Every problem names the file and the reason.
//! What a certificate says (its DNS names, subject and validity) is read
//! once here, for choosing by SNI, the expiry warning and the admin view;
//! key material never leaves this module except inside rustls's
//! `CertifiedKey`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

/// The largest PEM file read: a chain of a few certificates is a few KiB,
/// a CA bundle (the whole Mozilla set) about 250 KiB.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Certificates in one chain file.
pub const MAX_CHAIN: usize = 16;

/// A TLS file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub reason: String,
}

fn fail(path: &Path, reason: impl Into<String>) -> FileError {
    FileError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads a PEM file of at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> Result<Vec<u8>, FileError> {
    let meta = std::fs::metadata(path).map_err(|e| fail(path, format!("cannot read: {e}")))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(fail(
            path,
            format!(
                "{} bytes is larger than a PEM file Weir reads ({MAX_PEM_BYTES})",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(|e| fail(path, format!("cannot read: {e}")))
}

/// The certificates of a PEM file, in order: a chain (leaf first) or a CA
/// bundle. `what` names it in errors ("certificate chain", "CA bundle").
pub fn read_certs(
    path: &Path,
    what: &str,
    max: usize,
) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let text = read_pem(path)?;
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(&text) {
        let cert = item.map_err(|e| fail(path, format!("not a valid PEM {what}: {e}")))?;
        if out.len() == max {
            return Err(fail(path, format!("more than {max} certificates")));
        }
        out.push(cert);
    }
    if out.is_empty() {
        return Err(fail(
            path,
            format!("no certificate in it (a {what} is PEM `BEGIN CERTIFICATE` blocks)"),
        ));
    }
    Ok(out)
}

/// The one private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    let text = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        fail(
            path,
            format!(
                "no private key in it ({e}); a key file is one PEM `PRIVATE KEY`, \
                 `RSA PRIVATE KEY` or `EC PRIVATE KEY` block"
            ),
        )
    })
}

/// What a certificate says, for choosing it and for the admin view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// The chain file it came from.
    pub file: String,
    /// Its subject: attributes as the certificate lists them, `TYPE=value`
    /// joined by `, `.
    pub subject: String,
    /// DNS names of its subjectAltName (lower-case; `*.` for wildcards),
    /// or, without any, its subject's common name.
    pub names: Vec<String>,
    #[serde(serialize_with = "rfc3339")]
    pub not_before: SystemTime,
    #[serde(serialize_with = "rfc3339")]
    pub not_after: SystemTime,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string())
}

impl CertInfo {
    /// Reads a certificate (DER).
    pub fn parse(der: &CertificateDer<'_>, file: &Path) -> Result<CertInfo, FileError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| fail(file, format!("the certificate does not parse: {e}")))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_ascii_lowercase());
                }
            }
        }
        if names.is_empty() {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_ascii_lowercase),
            );
        }
        let time = |t: x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            if secs >= 0 {
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
            } else {
                SystemTime::UNIX_EPOCH
            }
        };
        Ok(CertInfo {
            file: file.display().to_string(),
            subject: cert.subject().to_string(),
            names,
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
        })
    }

    /// How long until it expires, from `now` (zero once expired).
    pub fn expires_in(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }
}

/// A certificate chain and its key, ready to serve.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Loads and checks a chain and its key (see the module doc).
pub fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Loaded, FileError> {
    let chain = read_certs(cert, "certificate chain", MAX_CHAIN)?;
    let info = CertInfo::parse(&chain[0], cert)?;
    for (i, c) in chain.iter().enumerate().skip(1) {
        CertInfo::parse(c, cert).map_err(|e| {
            fail(
                cert,
                format!("certificate {} of the chain: {}", i + 1, e.reason),
            )
        })?;
    }
    if info.not_after <= now {
        return Err(fail(
            cert,
            format!(
                "the certificate expired at {}",
                humantime::format_rfc3339_seconds(info.not_after)
            ),
        ));
    }
    if info.not_before > now {
        return Err(fail(
            cert,
            format!(
                "the certificate is not valid before {}",
                humantime::format_rfc3339_seconds(info.not_before)
            ),
        ));
    }
    let der = read_key(key)?;
    let signing = provider.key_provider.load_private_key(der).map_err(|e| {
        fail(
            key,
            format!("not a key Weir can sign with ({e}); RSA (2048 bits or more), ECDSA P-256 or P-384, or Ed25519"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(fail(
                key,
                format!(
                    "the private key does not match the certificate in {}",
                    cert.display()
                ),
            ));
        }
    }
    Ok(Loaded {
        key: Arc::new(certified),
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn pair(names: &[&str]) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads_with_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = pair(&["example.com", "*.example.net"]);
        let (cp, kp) = (
            write(dir.path(), "c.pem", &c),
            write(dir.path(), "k.pem", &k),
        );
        let l = load_pair(&cp, &kp, &provider(), SystemTime::now()).unwrap();
        assert_eq!(l.info.names, ["example.com", "*.example.net"]);
        assert!(l.info.expires_in(SystemTime::now()) > Duration::from_secs(86400));
    }

    #[test]
    fn every_problem_names_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = pair(&["a.test"]);
        let (_, k2) = pair(&["b.test"]);
        let cert = write(dir.path(), "c.pem", &c1);
        let key = write(dir.path(), "k.pem", &k1);
        let other_key = write(dir.path(), "other.pem", &k2);
        let junk = write(dir.path(), "junk.pem", "hello");
        let now = SystemTime::now();
        let p = provider();
        let cases = [
            (
                load_pair(&cert, &other_key, &p, now),
                "other.pem",
                "does not match",
            ),
            (
                load_pair(&junk, &key, &p, now),
                "junk.pem",
                "no certificate",
            ),
            (
                load_pair(&cert, &junk, &p, now),
                "junk.pem",
                "no private key",
            ),
            (
                load_pair(&dir.path().join("nope.pem"), &key, &p, now),
                "nope.pem",
                "cannot read",
            ),
            (
                load_pair(
                    &cert,
                    &key,
                    &p,
                    now + Duration::from_secs(2200 * 365 * 86400),
                ),
                "c.pem",
                "expired",
            ),
        ];
        for (r, file, reason) in cases {
            let e = r.unwrap_err();
            assert!(e.path.ends_with(file), "{e}");
            assert!(e.reason.contains(reason), "{e}");
        }
    }

    #[test]
    fn a_huge_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.pem");
        std::fs::write(&p, vec![b'a'; MAX_PEM_BYTES as usize + 1]).unwrap();
        let e = read_certs(&p, "CA bundle", 10).unwrap_err();
        assert!(e.reason.contains("larger than"), "{e}");
    }
}
