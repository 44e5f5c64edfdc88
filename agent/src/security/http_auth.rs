//! HTTP Basic authentication against the SASL users (the SCRAM
//! credentials), for the HTTP API and `/metrics`; the authorizer then
//! decides per request, as for Kafka requests.
//!
//! A password is checked by deriving its salted password again (PBKDF2,
//! thousands of HMACs), off the request threads and a few at a time; a
//! verified (user, password) is remembered for a minute, so a client that
//! sends its credentials on every request costs one derivation a minute.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aws_lc_rs::hmac;
use base64::Engine as _;

use super::{scram::Mechanism, Security};

/// Verified credentials remembered at once.
pub const MAX_CACHED: usize = 10_000;
/// How long a verified credential is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// A verified login: the tag of "user:password", the stored key of the
/// credential it matched, and when.
type Verified = (Vec<u8>, Vec<u8>, Instant);

pub struct HttpAuth {
    pub security: Arc<Security>,
    key: hmac::Key,
    /// user -> (tag of "user:password", the credential it was checked
    /// against, when): a changed or deleted credential is never matched.
    cache: Mutex<HashMap<String, Verified>>,
}

/// Why a request is refused (401).
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    Invalid,
}

impl HttpAuth {
    pub fn new(security: Arc<Security>) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &security.sasl.fake_key);
        Self {
            security,
            key,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The principal (`User:NAME`) of an `Authorization: Basic` header.
    /// A failure is answered after the same growing delay as a failed SASL
    /// authentication from that address.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        ip: IpAddr,
    ) -> Result<String, AuthError> {
        let owed = self.security.sasl.throttle.penalty(ip);
        if !owed.is_zero() {
            tokio::time::sleep(owed).await;
        }
        let r = self.check(header).await;
        if r == Err(AuthError::Missing) {
            // No credentials is a question, not a guess: answered at once.
            return r;
        }
        if r.is_err() {
            let delay = self.security.sasl.throttle.failed(ip);
            tracing::info!(%ip, "HTTP authentication failed");
            tokio::time::sleep(delay).await;
        }
        r
    }

    async fn check(&self, header: Option<&str>) -> Result<String, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let encoded = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
            .ok_or(AuthError::Malformed)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| AuthError::Malformed)?;
        let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
        let (user, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
        if user.is_empty() {
            return Err(AuthError::Malformed);
        }
        let tag = hmac::sign(&self.key, text.as_bytes()).as_ref().to_vec();
        let cred = [Mechanism::Sha512, Mechanism::Sha256]
            .into_iter()
            .find_map(|m| self.security.store.credential(user, m).map(|c| (m, c)));
        let Some((m, c)) = cred else {
            // The same work as for a known user: timing does not tell.
            super::sasl::verify_plain(&self.security.sasl, None, password.to_string()).await;
            return Err(AuthError::Invalid);
        };
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((t, stored, at)) = cache.get(user) {
                if at.elapsed() < CACHE_TTL
                    && *stored == c.stored_key
                    && aws_lc_rs::constant_time::verify_slices_are_equal(t, &tag).is_ok()
                {
                    return Ok(format!("User:{user}"));
                }
            }
        }
        let stored = c.stored_key.clone();
        let ok = super::sasl::verify_plain(&self.security.sasl, Some((m, c)), password.to_string())
            .await;
        if !ok {
            return Err(AuthError::Invalid);
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, _, at)| at.elapsed() < CACHE_TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(user.to_string(), (tag, stored, Instant::now()));
        Ok(format!("User:{user}"))
    }
}
