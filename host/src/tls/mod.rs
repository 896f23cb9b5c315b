//! TLS with rustls: what a TLS listener serves and how its handshakes run
//! (`server`, `accept`), the client side for upstreams (`client`), and
//! the files behind them (`certs`). rustls does
//! the protocol; what is here is loading and checking the files an
//! operator names (with the file and the reason for each problem), the
//! choice of certificate by SNI, the bounds on handshakes, their counts,
//! and swapping certificates in while handshakes are under way.
//!
//! One crypto provider serves everything, [`provider`]: aws-lc-rs
//! (docs/tls.md has the measurement behind the choice).

pub mod accept;
pub mod certs;
pub mod client;
pub mod server;

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use tokio::sync::Semaphore;

pub use accept::{ClientCert, Handshakes, Session};
pub use client::ClientTls;
pub use server::{Resumption, ServerTls, TlsErrors};

use crate::config::ListenerTls;

/// The crypto provider of every TLS context Weir makes.
pub fn provider() -> Arc<CryptoProvider> {
    static P: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// A TLS listener's state over its life: the serving [`ServerTls`]
/// (swapped whole when its files or settings change), what resumption
/// keeps across swaps, the bound on concurrent handshakes and their
/// counts.
#[derive(Debug)]
pub struct TlsListener {
    name: String,
    pub current: ArcSwap<ServerTls>,
    /// The settings `current` was made from.
    settings: ArcSwap<ListenerTls>,
    resumption: Resumption,
    /// One permit per handshake under way.
    pub handshakes: Arc<Semaphore>,
    pub stats: Handshakes,
}

impl TlsListener {
    /// Loads the listener's files; fails with every unusable one.
    pub fn load(name: &str, cfg: &ListenerTls) -> Result<TlsListener, TlsErrors> {
        let resumption = Resumption::new().map_err(|e| {
            TlsErrors(vec![certs::FileError {
                path: cfg
                    .certificates
                    .first()
                    .map(|c| c.cert.clone())
                    .unwrap_or_default(),
                reason: format!("cannot make session ticket keys: {e}"),
            }])
        })?;
        let tls = ServerTls::load(cfg, &resumption, &provider(), SystemTime::now())?;
        warn_expiring(&tls, cfg);
        Ok(TlsListener {
            name: name.to_owned(),
            current: ArcSwap::from_pointee(tls),
            settings: ArcSwap::from_pointee(cfg.clone()),
            resumption,
            handshakes: Arc::new(Semaphore::new(cfg.max_handshakes)),
            stats: Handshakes::default(),
        })
    }

    /// Loads `cfg`'s files again (changed files, or changed settings) and
    /// swaps them in if every one is usable; otherwise what serves keeps
    /// serving and the errors are returned. Handshakes under way finish
    /// with what they started with. `max_handshakes` applies from the
    /// next start (the semaphore is sized once).
    pub fn reload(&self, cfg: &ListenerTls) -> Result<(), TlsErrors> {
        let tls = ServerTls::load(cfg, &self.resumption, &provider(), SystemTime::now())?;
        self.swap(tls, cfg);
        Ok(())
    }

    /// Swaps in serving state already loaded from `cfg`.
    pub fn swap(&self, tls: ServerTls, cfg: &ListenerTls) {
        warn_expiring(&tls, cfg);
        self.current.store(Arc::new(tls));
        self.settings.store(Arc::new(cfg.clone()));
        tracing::info!(listener = %self.name, "TLS certificates loaded");
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What resumption keeps across swaps, for loading a replacement.
    pub fn resumption(&self) -> &Resumption {
        &self.resumption
    }

    /// The settings serving now.
    pub fn settings(&self) -> Arc<ListenerTls> {
        self.settings.load_full()
    }
}

/// Logs a warning for each certificate that expires within the
/// listener's `expiry_warning`.
fn warn_expiring(tls: &ServerTls, cfg: &ListenerTls) {
    let now = SystemTime::now();
    for info in tls.expiring(now, cfg.expiry_warning) {
        tracing::warn!(
            file = %info.file,
            names = ?info.names,
            expires_in_days = info.expires_in(now).as_secs() / 86_400,
            "certificate expires soon"
        );
    }
}
