//! Test certificates made with rcgen: a CA, server certificates it signs
//! (ECDSA P-256, or RSA 2048 with a key from `openssl`), client
//! certificates, and one that expired.
//! PEM text, written by the tests into the gateway's folder.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A new RSA 2048 key: rcgen does not make RSA keys with aws-lc-rs, so
/// `openssl` does (the TLS tests need it anyway).
pub fn rsa_key() -> KeyPair {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("run openssl (is it installed?)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    KeyPair::from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap()
}

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate (leaf only) and its private key, as PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Weir tests");
    dn
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.as_ref().pem()
    }

    fn sign(&self, mut params: CertificateParams, cn: &str, rsa: bool) -> Pem {
        params.distinguished_name = dn(cn);
        let key = if rsa {
            rsa_key()
        } else {
            KeyPair::generate().unwrap()
        };
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for `names` (the first is also its CN).
    pub fn server(&self, names: &[&str], rsa: bool) -> Pem {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, names[0], rsa)
    }

    /// A server certificate whose validity ended in 2020.
    pub fn expired_server(&self, name: &str) -> Pem {
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        self.sign(params, name, false)
    }

    /// A server certificate for `name` that expires `days` days from now.
    pub fn server_expiring_in(&self, name: &str, days: u64) -> Pem {
        let at = std::time::SystemTime::now() + std::time::Duration::from_secs(days * 86_400);
        let text = humantime::format_rfc3339(at).to_string();
        let ymd: Vec<i32> = text[..10].split('-').map(|n| n.parse().unwrap()).collect();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(ymd[0], ymd[1] as u8, ymd[2] as u8);
        self.sign(params, name, false)
    }

    /// A client certificate whose validity ended in 2020.
    pub fn expired_client(&self, cn: &str, dns: &str) -> Pem {
        let mut params = CertificateParams::new(vec![dns.to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        self.sign(params, cn, false)
    }

    /// A client certificate with common name `cn` and DNS name `dns`.
    pub fn client(&self, cn: &str, dns: &str) -> Pem {
        let mut params = CertificateParams::new(vec![dns.to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, cn, false)
    }
}
