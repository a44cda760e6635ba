//! TLS on the listener (`[tls]`): rustls with ring, HTTP/2 and HTTP/1.1
//! offered by ALPN, and a certificate that can be replaced while Berth
//! runs. The pair in `cert_file`/`key_file` is read again every
//! `reload_interval_secs` and on SIGHUP; when either file changed and the
//! two form a valid pair (the key matches the certificate), new handshakes
//! get it. Connections already open keep the certificate they started
//! with, so a cert-manager renewal needs no restart and cuts off no pull.
//! A pair that does not load is logged and the old one kept.

use crate::config::Tls;
use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// The certificate being served, replaced by reloads.
struct Current {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    served: RwLock<Arc<CertifiedKey>>,
    /// The files' bytes last tried, loaded or not: a reload acts on change.
    tried: std::sync::Mutex<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.served.read().expect("never poisoned").clone())
    }
}

/// A certificate chain and its key from PEM bytes; the key must match the
/// chain's first certificate.
fn parse(
    cert: &[u8],
    key: &[u8],
    provider: &CryptoProvider,
    files: (&Path, &Path),
) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading certificates from {}", files.0.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no PEM certificate",
        files.0.display()
    );
    let key = PrivateKeyDer::from_pem_slice(key)
        .with_context(|| format!("reading a private key from {}", files.1.display()))?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "{} and {} do not form a certificate and its key",
            files.0.display(),
            files.1.display()
        )
    })
}

fn read_pair(cert_file: &Path, key_file: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let cert =
        std::fs::read(cert_file).with_context(|| format!("reading {}", cert_file.display()))?;
    let key = std::fs::read(key_file).with_context(|| format!("reading {}", key_file.display()))?;
    Ok((cert, key))
}

impl Current {
    /// Read the files again; serve them if they changed and load.
    fn reload(&self) {
        let (cert, key) = match read_pair(&self.cert_file, &self.key_file) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "TLS files not reloaded; serving the previous certificate");
                return;
            }
        };
        {
            let mut tried = self.tried.lock().expect("never poisoned");
            if tried.0 == cert && tried.1 == key {
                return;
            }
            *tried = (cert.clone(), key.clone());
        }
        let files = (self.cert_file.as_path(), self.key_file.as_path());
        match parse(&cert, &key, &self.provider, files) {
            Ok(k) => {
                *self.served.write().expect("never poisoned") = Arc::new(k);
                tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
            }
            // half-written files (a renewal writes two) load on a later look
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "TLS files changed but do not load; serving the previous certificate"
            ),
        }
    }
}

/// The acceptor for `cfg`, when it names a certificate; and, either way,
/// the task that answers SIGHUP (`systemctl reload`): with TLS it reloads
/// the pair (as does every `reload_interval_secs`), without it it is logged
/// — SIGHUP's default action would stop the server.
pub fn listener(cfg: &Tls) -> anyhow::Result<Option<TlsAcceptor>> {
    let (Some(cert_file), Some(key_file)) = (&cfg.cert_file, &cfg.key_file) else {
        spawn_reloader(None, 0);
        return Ok(None);
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert, key) = read_pair(cert_file, key_file)?;
    let first = parse(&cert, &key, &provider, (cert_file, key_file))?;
    let current = Arc::new(Current {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        provider: provider.clone(),
        served: RwLock::new(Arc::new(first)),
        tried: std::sync::Mutex::new((cert, key)),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(current.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    spawn_reloader(Some(current), cfg.reload_interval_secs);
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Reload `current` every `every_secs` (0: never) and on each SIGHUP.
fn spawn_reloader(current: Option<Arc<Current>>, every_secs: u64) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler");
            return;
        }
    };
    tokio::spawn(async move {
        let period = Duration::from_secs(every_secs.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick(), if every_secs > 0 && current.is_some() => {}
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    match current {
                        Some(_) => tracing::info!("SIGHUP: reading the TLS files again"),
                        None => tracing::info!("SIGHUP: nothing to reload (no [tls])"),
                    }
                }
            }
            let Some(c) = current.clone() else { continue };
            // file reads: off the async workers
            let _ = tokio::task::spawn_blocking(move || c.reload()).await;
        }
    });
}
