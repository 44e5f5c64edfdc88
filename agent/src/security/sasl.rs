//! One connection's SASL state: SaslHandshake (v1) then SaslAuthenticate
//! (v0–v2) with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, and
//! re-authentication (KIP-368) before the session's lifetime ends.
//!
//! Before authentication a SASL listener accepts only ApiVersions,
//! SaslHandshake and SaslAuthenticate; anything else closes the
//! connection, as Kafka does. A failed authentication is answered with
//! SASL_AUTHENTICATION_FAILED after a delay and the connection is closed;
//! the delay grows with the failures recently seen from the same address.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
        SaslHandshakeResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{
    scram::{Mechanism, ServerFirst},
    store::SecurityStore,
};

/// A mechanism a listener may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    Plain,
    Scram(Mechanism),
}

impl Mech {
    pub fn name(self) -> &'static str {
        match self {
            Mech::Plain => "PLAIN",
            Mech::Scram(m) => m.name(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PLAIN" => Some(Mech::Plain),
            other => Mechanism::parse(other).map(Mech::Scram),
        }
    }
}

/// Counters of `/metrics`: successful authentications, re-authentications
/// (KIP-368), failed ones, and connections closed because their session
/// expired without re-authenticating.
pub static AUTHENTICATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static REAUTHENTICATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static EXPIRED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Failed authentications by client address, to slow down guessing across
/// connections. Bounded: at most `MAX_TRACKED` addresses, the oldest
/// forgotten first; an address is forgotten a minute after its last
/// failure.
pub struct Throttle {
    base: Duration,
    seen: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Client addresses whose failures are remembered at once.
pub const MAX_TRACKED: usize = 10_000;
/// The longest delay before a failed authentication is answered.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(5);
const FORGET_AFTER: Duration = Duration::from_secs(60);

impl Throttle {
    pub fn new(base: Duration) -> Self {
        Self {
            base,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The wait owed by `ip` before anything it sends is checked: its
    /// failures of the last minute beyond five make it wait as long as its
    /// next failure would, so guesses on many connections at once are
    /// slowed too, not only their answers.
    pub fn penalty(&self, ip: IpAddr) -> Duration {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(&ip) {
            Some((n, at)) if at.elapsed() < FORGET_AFTER && *n > 5 => self
                .base
                .saturating_mul(1u32 << (*n - 5).min(16))
                .min(MAX_FAILURE_DELAY),
            _ => Duration::ZERO,
        }
    }

    /// Records a failure from `ip`; the delay before answering it: the
    /// base delay (Kafka's `connection.failed.authentication.delay.ms`),
    /// doubled for each failure in the last minute beyond the first five,
    /// at most `MAX_FAILURE_DELAY`.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&ip) {
            seen.retain(|_, (_, at)| now.duration_since(*at) < FORGET_AFTER);
            if seen.len() >= MAX_TRACKED {
                if let Some(oldest) = seen.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                    seen.remove(&oldest);
                }
            }
        }
        let entry = seen.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let extra = entry.0.saturating_sub(5).min(16);
        self.base
            .saturating_mul(1u32 << extra)
            .min(MAX_FAILURE_DELAY)
            .max(self.base)
    }
}

/// Checks a PLAIN (or HTTP Basic) password against the user's credential
/// off the request threads, a few at a time; an unknown user costs the
/// same derivation against a stand-in, so timing does not tell who exists.
pub async fn verify_plain(
    ctx: &SaslContext,
    cred: Option<(Mechanism, super::scram::Credential)>,
    password: String,
) -> bool {
    let known = cred.is_some();
    let (m, c) = cred.unwrap_or_else(|| {
        (
            Mechanism::Sha512,
            super::scram::Credential {
                salt: ctx.fake_key[..super::scram::SALT_BYTES].to_vec(),
                iterations: super::scram::DEFAULT_ITERATIONS,
                stored_key: vec![0; 64],
                server_key: vec![0; 64],
            },
        )
    });
    let _permit = ctx.plain_checks.clone().acquire_owned().await;
    let ok = tokio::task::spawn_blocking(move || c.verify_password(m, &password))
        .await
        .unwrap_or(false);
    known && ok
}

/// What the server shares among connections for authentication.
pub struct SaslContext {
    pub store: Arc<SecurityStore>,
    pub mechanisms: Vec<Mech>,
    /// Kafka's `connections.max.reauth.ms` (0: sessions do not expire).
    pub max_reauth: Duration,
    pub throttle: Throttle,
    /// PLAIN derives the salted password again (PBKDF2, thousands of
    /// HMACs): at most this many at once, off the request threads.
    pub plain_checks: Arc<tokio::sync::Semaphore>,
    /// Key of the made-up salts of unknown users.
    pub fake_key: [u8; 32],
}

enum State {
    /// Waiting for SaslHandshake.
    Start,
    Handshaken(Mech),
    ScramSent(Box<ServerFirst>, Mechanism),
}

/// The outcome of one SASL request.
pub enum Step {
    /// Send the response, go on reading.
    Reply(kafka_protocol::messages::ResponseKind),
    /// Send the response after `delay`, then close the connection.
    Fail(kafka_protocol::messages::ResponseKind, Duration),
}

pub struct Session {
    /// `User:NAME` once authenticated.
    pub principal: Option<String>,
    state: State,
    /// The mechanism of the first authentication: a re-authentication
    /// must use it again (KIP-368).
    mechanism: Option<Mech>,
    /// When the session ends (re-authentication due), if it does.
    pub expires: Option<Instant>,
    authenticate_version: i16,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Self {
            principal: None,
            state: State::Start,
            mechanism: None,
            expires: None,
            authenticate_version: 0,
        }
    }

    /// Whether a request of `key` may be served now.
    pub fn admits(&self, key: ApiKey) -> bool {
        match key {
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => true,
            _ => {
                self.principal.is_some()
                    && matches!(self.state, State::Start)
                    && self.expires.is_none_or(|e| Instant::now() < e)
            }
        }
    }

    pub fn handshake(&mut self, ctx: &SaslContext, r: &SaslHandshakeRequest) -> Step {
        let offered: Vec<StrBytes> = ctx
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let resp = SaslHandshakeResponse::default().with_mechanisms(offered);
        let mech = Mech::parse(r.mechanism.as_str()).filter(|m| ctx.mechanisms.contains(m));
        match mech {
            Some(m) if self.mechanism.is_some_and(|first| first != m) => Step::Fail(
                resp.with_error_code(ResponseError::IllegalSaslState.code())
                    .into(),
                Duration::ZERO,
            ),
            Some(m) if matches!(self.state, State::Start) => {
                self.state = State::Handshaken(m);
                self.mechanism = Some(m);
                Step::Reply(resp.into())
            }
            Some(_) => Step::Fail(
                resp.with_error_code(ResponseError::IllegalSaslState.code())
                    .into(),
                Duration::ZERO,
            ),
            None => Step::Fail(
                resp.with_error_code(ResponseError::UnsupportedSaslMechanism.code())
                    .into(),
                Duration::ZERO,
            ),
        }
    }

    fn failed(&self, ctx: &SaslContext, ip: IpAddr, mech: &str) -> Step {
        FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let delay = ctx.throttle.failed(ip);
        Step::Fail(
            SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                .with_error_message(Some(StrBytes::from_string(format!(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism {mech}"
                ))))
                .into(),
            delay,
        )
    }

    fn succeeded(
        &mut self,
        ctx: &SaslContext,
        user: String,
        bytes: Bytes,
        ip: IpAddr,
        mech: &str,
    ) -> Step {
        let principal = format!("User:{user}");
        // Re-authentication must keep the principal (KIP-368).
        if self.principal.as_ref().is_some_and(|p| *p != principal) {
            tracing::warn!(%ip, "re-authentication as another principal refused");
            return self.failed(ctx, ip, mech);
        }
        let counter = if self.principal.is_some() {
            &REAUTHENTICATIONS
        } else {
            &AUTHENTICATIONS
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.principal = Some(principal);
        self.state = State::Start;
        let lifetime = if ctx.max_reauth.is_zero() || self.authenticate_version < 1 {
            self.expires = None;
            0
        } else {
            self.expires = Some(Instant::now() + ctx.max_reauth);
            ctx.max_reauth.as_millis() as i64
        };
        Step::Reply(
            SaslAuthenticateResponse::default()
                .with_auth_bytes(bytes)
                .with_session_lifetime_ms(lifetime)
                .into(),
        )
    }

    pub async fn authenticate(
        &mut self,
        ctx: &SaslContext,
        r: &SaslAuthenticateRequest,
        version: i16,
        ip: IpAddr,
    ) -> Step {
        self.authenticate_version = version;
        let owed = ctx.throttle.penalty(ip);
        if !owed.is_zero() {
            tokio::time::sleep(owed).await;
        }
        match std::mem::replace(&mut self.state, State::Start) {
            State::Start => Step::Fail(
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate before SaslHandshake",
                    )))
                    .into(),
                Duration::ZERO,
            ),
            State::Handshaken(Mech::Plain) => {
                // authzid NUL user NUL password
                let parts: Vec<&[u8]> = r.auth_bytes.split(|b| *b == 0).collect();
                let ok = match parts.as_slice() {
                    [authz, user, password] => {
                        match (std::str::from_utf8(user), std::str::from_utf8(password)) {
                            (Ok(user), Ok(password))
                                if !user.is_empty()
                                    && (authz.is_empty() || *authz == user.as_bytes()) =>
                            {
                                let cred = [Mechanism::Sha512, Mechanism::Sha256]
                                    .into_iter()
                                    .find_map(|m| ctx.store.credential(user, m).map(|c| (m, c)));
                                let verified = verify_plain(ctx, cred, password.to_string()).await;
                                verified.then(|| user.to_string())
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                };
                match ok {
                    Some(user) => self.succeeded(ctx, user, Bytes::new(), ip, "PLAIN"),
                    None => {
                        tracing::info!(%ip, mechanism = "PLAIN", "authentication failed");
                        self.failed(ctx, ip, "PLAIN")
                    }
                }
            }
            State::Handshaken(Mech::Scram(m)) => {
                let store = ctx.store.clone();
                match ServerFirst::start(
                    m,
                    &r.auth_bytes,
                    |u| store.credential(u, m),
                    &ctx.fake_key,
                ) {
                    Ok(first) => {
                        let reply = Bytes::copy_from_slice(first.message().as_bytes());
                        self.state = State::ScramSent(Box::new(first), m);
                        Step::Reply(
                            SaslAuthenticateResponse::default()
                                .with_auth_bytes(reply)
                                .into(),
                        )
                    }
                    Err(e) => {
                        tracing::info!(%ip, mechanism = m.name(), error = %e, "authentication failed");
                        self.failed(ctx, ip, m.name())
                    }
                }
            }
            State::ScramSent(first, m) => {
                let user = first.user.clone();
                match first.finish(&r.auth_bytes) {
                    Ok((user, server_final)) => self.succeeded(
                        ctx,
                        user,
                        Bytes::from(server_final.into_bytes()),
                        ip,
                        m.name(),
                    ),
                    Err(e) => {
                        // The user name is not a secret; the password never
                        // reaches the server.
                        let user: String = user.chars().take(256).collect();
                        tracing::info!(%ip, user = ?user, mechanism = m.name(), error = %e, "authentication failed");
                        self.failed(ctx, ip, m.name())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_admits_requests_until_it_expires_then_only_sasl() {
        use crate::security::scram::{Credential, Mechanism};
        use silt_coordinator::{EmbeddedStore, MetaStore};
        let meta: std::sync::Arc<dyn MetaStore> = std::sync::Arc::new(EmbeddedStore::in_memory());
        let store = crate::security::store::SecurityStore::empty(
            meta,
            "c",
            crate::security::store::Limits {
                max_credentials: 10,
                max_acls: 10,
            },
        );
        store
            .put_credential(
                "alice",
                Mechanism::Sha256,
                &Credential::from_password(Mechanism::Sha256, "pw", 4096),
            )
            .await
            .unwrap();
        let ctx = SaslContext {
            store,
            mechanisms: vec![Mech::Plain],
            max_reauth: Duration::from_millis(200),
            throttle: Throttle::new(Duration::ZERO),
            plain_checks: Arc::new(tokio::sync::Semaphore::new(1)),
            fake_key: [0; 32],
        };
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut s = Session::new();
        assert!(!s.admits(ApiKey::Metadata), "nothing before authentication");
        assert!(s.admits(ApiKey::ApiVersions));
        let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        assert!(matches!(s.handshake(&ctx, &hs), Step::Reply(_)));
        let auth =
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0alice\0pw"));
        let Step::Reply(kafka_protocol::messages::ResponseKind::SaslAuthenticate(r)) =
            s.authenticate(&ctx, &auth, 1, ip).await
        else {
            panic!("authentication failed")
        };
        assert_eq!(r.session_lifetime_ms, 200);
        assert_eq!(s.principal.as_deref(), Some("User:alice"));
        assert!(s.admits(ApiKey::Metadata));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            !s.admits(ApiKey::Metadata),
            "expired: closed at the next request"
        );
        assert!(
            s.admits(ApiKey::SaslHandshake),
            "re-authentication stays possible"
        );
        // Re-authenticating renews it; another user is refused.
        assert!(matches!(s.handshake(&ctx, &hs), Step::Reply(_)));
        assert!(matches!(
            s.authenticate(&ctx, &auth, 1, ip).await,
            Step::Reply(_)
        ));
        assert!(s.admits(ApiKey::Metadata));
        ctx.store
            .put_credential(
                "bob",
                Mechanism::Sha256,
                &Credential::from_password(Mechanism::Sha256, "pw", 4096),
            )
            .await
            .unwrap();
        assert!(matches!(s.handshake(&ctx, &hs), Step::Reply(_)));
        let bob =
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0bob\0pw"));
        assert!(matches!(
            s.authenticate(&ctx, &bob, 1, ip).await,
            Step::Fail(..)
        ));
    }

    #[test]
    fn unknown_mechanisms_and_a_switch_of_mechanism_are_refused() {
        use silt_coordinator::{EmbeddedStore, MetaStore};
        let meta: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::in_memory());
        let ctx = SaslContext {
            store: crate::security::store::SecurityStore::empty(
                meta,
                "c",
                crate::security::store::Limits {
                    max_credentials: 1,
                    max_acls: 1,
                },
            ),
            mechanisms: vec![Mech::Plain, Mech::Scram(Mechanism::Sha512)],
            max_reauth: Duration::ZERO,
            throttle: Throttle::new(Duration::ZERO),
            plain_checks: Arc::new(tokio::sync::Semaphore::new(1)),
            fake_key: [0; 32],
        };
        let hs = |m: &'static str| {
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(m))
        };
        let mut s = Session::new();
        let Step::Fail(kafka_protocol::messages::ResponseKind::SaslHandshake(r), _) =
            s.handshake(&ctx, &hs("GSSAPI"))
        else {
            panic!("GSSAPI accepted")
        };
        assert_eq!(r.error_code, ResponseError::UnsupportedSaslMechanism.code());
        assert_eq!(r.mechanisms.len(), 2, "the offered mechanisms are listed");
        // Not offered here: SCRAM-SHA-256.
        assert!(matches!(
            s.handshake(&ctx, &hs("SCRAM-SHA-256")),
            Step::Fail(..)
        ));
        let mut s = Session::new();
        assert!(matches!(s.handshake(&ctx, &hs("PLAIN")), Step::Reply(_)));
        s.state = State::Start;
        assert!(
            matches!(s.handshake(&ctx, &hs("SCRAM-SHA-512")), Step::Fail(..)),
            "a session keeps its mechanism"
        );
    }

    #[test]
    fn an_address_with_recent_failures_waits_before_being_checked() {
        let t = Throttle::new(Duration::from_millis(100));
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..5 {
            t.failed(ip);
        }
        assert_eq!(t.penalty(ip), Duration::ZERO, "five failures are free");
        t.failed(ip);
        assert_eq!(t.penalty(ip), Duration::from_millis(200));
        assert_eq!(t.penalty("10.0.0.10".parse().unwrap()), Duration::ZERO);
    }

    #[test]
    fn failures_from_one_address_are_slowed_down_and_bounded() {
        let t = Throttle::new(Duration::from_millis(100));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let delays: Vec<Duration> = (0..20).map(|_| t.failed(ip)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[4], Duration::from_millis(100));
        assert_eq!(delays[5], Duration::from_millis(200));
        assert_eq!(delays[19], MAX_FAILURE_DELAY);
        // Another address is not slowed by them.
        assert_eq!(
            t.failed("10.0.0.2".parse().unwrap()),
            Duration::from_millis(100)
        );
        // The table stays bounded.
        for i in 0..(MAX_TRACKED as u32 + 100) {
            t.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(t.seen.lock().unwrap().len() <= MAX_TRACKED);
    }
}
