//! TLS for the Kafka listeners (and the HTTP endpoints): a rustls server
//! configuration from PEM files, reloaded when the files change or on
//! SIGHUP, with optional client-certificate authentication.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use tokio_util::sync::CancellationToken;

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "requested" => Some(Self::Requested),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// The files a TLS configuration is built from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates.
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsFiles {
    /// A server configuration from the files, or what is wrong with them.
    pub fn load(&self) -> Result<Arc<ServerConfig>, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| format!("ssl_certificate_file {}: {e}", self.cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ssl_certificate_file {}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "ssl_certificate_file {}: no certificate in it",
                self.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("ssl_key_file {}: {e}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = match (self.client_auth, &self.ca) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(
                    "ssl_client_auth needs ssl_ca_file (the CA of client certificates)".into(),
                )
            }
            (auth, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca)
                    .map_err(|e| format!("ssl_ca_file {}: {e}", ca.display()))?
                {
                    let c = c.map_err(|e| format!("ssl_ca_file {}: {e}", ca.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("ssl_ca_file {}: {e}", ca.display()))?;
                }
                let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                if auth == ClientAuth::Requested {
                    v = v.allow_unauthenticated();
                }
                builder.with_client_cert_verifier(
                    v.build()
                        .map_err(|e| format!("ssl_ca_file {}: {e}", ca.display()))?,
                )
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("ssl_certificate_file/ssl_key_file: {e}"))?;
        Ok(Arc::new(config))
    }

    fn modified(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// The current server configuration, replaced when the files change.
pub struct Reloading {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

/// How often the files' modification times are looked at.
pub const RELOAD_CHECK: Duration = Duration::from_secs(10);

impl Reloading {
    /// Loads the files (an error stops the agent at start) and reloads them
    /// when they change or on SIGHUP, until `shutdown`. A reload that fails
    /// keeps the configuration in use and logs why.
    pub fn start(files: TlsFiles, shutdown: CancellationToken) -> Result<Arc<Self>, String> {
        let current = files.load()?;
        let me = Arc::new(Self {
            files,
            current: RwLock::new(current),
        });
        let watcher = me.clone();
        tokio::spawn(async move {
            let mut seen = watcher.files.modified();
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let signalled = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RELOAD_CHECK) => false,
                    Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                let now = watcher.files.modified();
                if signalled || now != seen {
                    // Remembered only once loaded: a half-written file is
                    // tried again at the next check.
                    let w = watcher.clone();
                    if tokio::task::spawn_blocking(move || w.reload())
                        .await
                        .unwrap_or(false)
                    {
                        seen = now;
                    }
                }
            }
        });
        Ok(me)
    }

    /// Whether the files were loaded.
    pub fn reload(&self) -> bool {
        match self.files.load() {
            Ok(c) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = c;
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the certificate in use");
                false
            }
        }
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}
