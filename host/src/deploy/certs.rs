//! Certificate files watched while the gateway serves: every certificate
//! chain, key and client CA bundle a TLS listener names. A change (a
//! renewal tool writing new files, or renaming them into place) reloads
//! every TLS listener's files; a listener whose files are all usable
//! swaps them in (`tls::TlsListener::reload`), one with an unusable file
//! keeps serving what it had, and the file and the reason are logged.
//! Handshakes under way finish with the certificates they started with.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::{FileWatch, watch_ready};
use crate::config::Config;
use crate::server::Gateway;

/// The watches on the folders of a configuration's TLS files.
#[derive(Debug, Default)]
pub struct CertWatch {
    files: BTreeSet<PathBuf>,
    _watches: Vec<FileWatch>,
}

/// Every TLS file `config` names, absolute.
fn files(config: &Config) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for l in &config.listeners {
        let Some(tls) = &l.tls else { continue };
        for pair in &tls.certificates {
            out.insert(pair.cert.clone());
            out.insert(pair.key.clone());
        }
        if let Some(auth) = &tls.client_auth {
            out.insert(auth.ca.clone());
        }
    }
    out.into_iter()
        .filter_map(|p| std::path::absolute(&p).ok())
        .collect()
}

impl CertWatch {
    /// Watches the folders of `config`'s TLS files, sending a file's path
    /// when it changes. A folder that cannot be watched is logged; its
    /// files then change only with a reload (SIGHUP).
    pub fn start(config: &Config, tx: &mpsc::UnboundedSender<PathBuf>) -> CertWatch {
        let files = files(config);
        let dirs: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_owned))
            .collect();
        let mut watches = Vec::new();
        for dir in dirs {
            let wanted = files.clone();
            match watch_ready(&dir, move |p| wanted.contains(p), tx.clone()) {
                Ok(w) => watches.push(w),
                Err(e) => {
                    tracing::warn!(error = %e, "certificate files in this folder reload only on SIGHUP")
                }
            }
        }
        CertWatch {
            files,
            _watches: watches,
        }
    }

    /// Whether this watch covers exactly `config`'s files.
    pub fn covers(&self, config: &Config) -> bool {
        self.files == files(config)
    }
}

/// A watched TLS file changed: reloads every TLS listener's files.
pub fn changed(gateway: &Gateway, files: &[PathBuf]) {
    tracing::info!(files = ?files, "certificate files changed; reloading them");
    for (listener, errors) in gateway.reload_certificates() {
        for e in &errors.0 {
            tracing::error!(%listener, file = %e.path.display(), reason = %e.reason, "certificate reload refused; the certificates serving keep serving");
        }
    }
}
