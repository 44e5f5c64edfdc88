//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks
//! them: the server side of the exchange, and the credentials it keeps
//! (salt, iteration count, StoredKey, ServerKey; never the password).
//! The math (PBKDF2, HMAC, SHA-2, constant-time comparison, randomness)
//! is aws-lc-rs's.

use std::num::NonZeroU32;

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2, rand};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Kafka's lower bound for a SCRAM credential's iteration count.
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's upper bound (`ScramMechanism.maxIterations`).
pub const MAX_ITERATIONS: u32 = 16384;
/// Salt length of the credentials silt makes.
pub const SALT_BYTES: usize = 32;
/// The iterations `silt users add` uses unless told otherwise.
pub const DEFAULT_ITERATIONS: u32 = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's `ScramMechanism` type numbers (AlterUserScramCredentials).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::Sha256 => hmac::HMAC_SHA256,
            Mechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::Sha256 => &digest::SHA256,
            Mechanism::Sha512 => &digest::SHA512,
        }
    }

    pub fn output_len(self) -> usize {
        self.digest().output_len()
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// Hi(password, salt, i) of RFC 5802.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        pbkdf2::derive(
            self.pbkdf2(),
            NonZeroU32::new(iterations.max(1)).expect("at least one"),
            salt,
            password,
            &mut out,
        );
        out
    }
}

/// What the server keeps of a user's password for one mechanism.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "b64")]
    pub stored_key: Vec<u8>,
    #[serde(with = "b64")]
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// From a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mech: Mechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let client_key = mech.mac(salted_password, b"Client Key");
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: mech.hash(&client_key),
            server_key: mech.mac(salted_password, b"Server Key"),
        }
    }

    /// From a password, with a fresh random salt (`silt users`).
    pub fn from_password(mech: Mechanism, password: &str, iterations: u32) -> Self {
        let mut salt = vec![0u8; SALT_BYTES];
        rand::fill(&mut salt).expect("system randomness");
        let salted = mech.salted_password(password.as_bytes(), &salt, iterations);
        Self::from_salted_password(mech, &salted, &salt, iterations)
    }

    /// Whether `password` is this credential's (SASL/PLAIN): the salted
    /// password is derived again and compared in constant time.
    pub fn verify_password(&self, mech: Mechanism, password: &str) -> bool {
        let salted = mech.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let other = Self::from_salted_password(mech, &salted, &self.salt, self.iterations);
        constant_time::verify_slices_are_equal(&other.stored_key, &self.stored_key).is_ok()
    }
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// Why an exchange failed. The client only ever learns that it failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("the authorization id differs from the user name")]
    AuthzId,
    #[error("the nonce does not continue the server's")]
    Nonce,
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// RFC 5802 `saslname` decoding ("=2C" is ",", "=3D" is "=").
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The first step's state, kept for the second.
pub struct ServerFirst {
    mech: Mechanism,
    pub user: String,
    /// None: unknown user (a made-up salt was sent, so the reply does not
    /// say whether the user exists).
    credential: Option<Credential>,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ServerFirst {
    /// The reply to the client's first message.
    pub fn message(&self) -> &str {
        &self.server_first
    }

    /// Reads `client-first-message` ("n,,n=user,r=nonce"). `lookup` finds
    /// the user's credential; `fake_key` makes the made-up salt of an
    /// unknown user stable across attempts.
    pub fn start(
        mech: Mechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
        fake_key: &[u8],
    ) -> Result<Self, ScramError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (gs2, bare) = split_gs2(text)?;
        let mut user = None;
        let mut nonce = None;
        for attr in bare.split(',') {
            if let Some(v) = attr.strip_prefix("n=") {
                user = Some(decode_saslname(v)?);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v.to_string());
            } else if attr.starts_with("m=") {
                return Err(ScramError::Malformed("mandatory extension"));
            }
            // Other attributes (Kafka's "tokenauth=true" extension)
            // are ignored.
        }
        let user = user.ok_or(ScramError::Malformed("no user name"))?;
        let client_nonce = nonce.ok_or(ScramError::Malformed("no nonce"))?;
        if user.is_empty() || client_nonce.is_empty() {
            return Err(ScramError::Malformed("empty user name or nonce"));
        }
        if let Some(authz) = gs2 {
            if authz != user {
                return Err(ScramError::AuthzId);
            }
        }
        let credential = lookup(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            // Shaped like the credentials `silt users` makes (32-byte salt,
            // its default iterations), so the reply does not tell.
            None => (
                mech.mac(fake_key, user.as_bytes())[..32].to_vec(),
                DEFAULT_ITERATIONS,
            ),
        };
        let mut server_nonce = [0u8; 24];
        rand::fill(&mut server_nonce).expect("system randomness");
        let nonce = format!(
            "{client_nonce}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(server_nonce)
        );
        let server_first = format!(
            "r={nonce},s={},i={iterations}",
            base64::engine::general_purpose::STANDARD.encode(salt)
        );
        Ok(Self {
            mech,
            user,
            credential,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
        })
    }

    /// Reads `client-final-message` ("c=biws,r=nonce,p=proof") and checks
    /// the proof; on success, the `server-final-message`.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, String), ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut nonce = None;
        let mut binding = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        // "biws" is base64 of "n,,"; "eSws" of "y,,". An authzid header
        // is echoed in full; any of them is fine as long as it carries no
        // channel binding ("p=").
        let binding = binding.ok_or(ScramError::Malformed("no channel binding attribute"))?;
        let header = base64::engine::general_purpose::STANDARD
            .decode(binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        if header.starts_with(b"p=") {
            return Err(ScramError::ChannelBinding);
        }
        // Kafka accepts a final nonce that ends with the combined one:
        // older librdkafka sends its own nonce again in front of it. The
        // server's random part is in it either way.
        if !nonce.is_some_and(|n| n.ends_with(self.nonce.as_str())) {
            return Err(ScramError::Nonce);
        }
        let proof = base64::engine::general_purpose::STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let Some(cred) = self.credential else {
            return Err(ScramError::InvalidCredentials);
        };
        if proof.len() != cred.stored_key.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = self.mech.mac(&cred.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored = self.mech.hash(&client_key);
        if constant_time::verify_slices_are_equal(&stored, &cred.stored_key).is_err() {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = self.mech.mac(&cred.server_key, auth_message.as_bytes());
        Ok((
            self.user,
            format!(
                "v={}",
                base64::engine::general_purpose::STANDARD.encode(server_signature)
            ),
        ))
    }
}

/// Splits the GS2 header off: (authzid, client-first-message-bare).
fn split_gs2(text: &str) -> Result<(Option<String>, &str), ScramError> {
    let mut parts = text.splitn(3, ',');
    let flag = parts.next().ok_or(ScramError::Malformed("empty"))?;
    let authz = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
    let bare = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad GS2 flag")),
    }
    let authz = match authz {
        "" => None,
        a => Some(decode_saslname(
            a.strip_prefix("a=")
                .ok_or(ScramError::Malformed("bad authzid"))?,
        )?),
    };
    Ok((authz, bare))
}

#[cfg(test)]
pub mod client {
    //! The client side, for tests: what librdkafka and the Java client do.
    use super::*;

    pub struct Client {
        pub mech: Mechanism,
        pub user: String,
        pub password: String,
        pub nonce: String,
    }

    impl Client {
        pub fn first(&self) -> String {
            format!("n,,n={},r={}", self.user, self.nonce)
        }

        /// (client-final-message, expected server signature).
        pub fn last(&self, server_first: &str) -> (String, String) {
            let mut nonce = "";
            let mut salt = vec![];
            let mut iterations = 0;
            for a in server_first.split(',') {
                if let Some(v) = a.strip_prefix("r=") {
                    nonce = v;
                } else if let Some(v) = a.strip_prefix("s=") {
                    salt = base64::engine::general_purpose::STANDARD.decode(v).unwrap();
                } else if let Some(v) = a.strip_prefix("i=") {
                    iterations = v.parse().unwrap();
                }
            }
            let salted = self
                .mech
                .salted_password(self.password.as_bytes(), &salt, iterations);
            let client_key = self.mech.mac(&salted, b"Client Key");
            let stored_key = self.mech.hash(&client_key);
            let without_proof = format!("c=biws,r={nonce}");
            let auth = format!(
                "n={},r={},{server_first},{without_proof}",
                self.user, self.nonce
            );
            let sig = self.mech.mac(&stored_key, auth.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            let server_key = self.mech.mac(&salted, b"Server Key");
            let server_sig = self.mech.mac(&server_key, auth.as_bytes());
            (
                format!(
                    "{without_proof},p={}",
                    base64::engine::general_purpose::STANDARD.encode(proof)
                ),
                format!(
                    "v={}",
                    base64::engine::general_purpose::STANDARD.encode(server_sig)
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client::Client;
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn rfc7677_example_verifies() {
        let mech = Mechanism::Sha256;
        let salt = base64::engine::general_purpose::STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap();
        let cred = Credential::from_password_with_salt(mech, "pencil", &salt, 4096);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = mech.mac(&cred.server_key, auth.as_bytes());
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let client_sig = mech.mac(&cred.stored_key, auth.as_bytes());
        let proof = base64::engine::general_purpose::STANDARD
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let client_key: Vec<u8> = proof.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        assert_eq!(mech.hash(&client_key), cred.stored_key);
    }

    fn exchange(
        mech: Mechanism,
        stored: &Credential,
        password: &str,
    ) -> Result<String, ScramError> {
        let c = Client {
            mech,
            user: "alice".into(),
            password: password.into(),
            nonce: "fyko+d2lbbFgONRv9qkxdawL".into(),
        };
        let first = ServerFirst::start(
            mech,
            c.first().as_bytes(),
            |u| (u == "alice").then(|| stored.clone()),
            b"k",
        )?;
        let (last, want) = c.last(first.message());
        let (user, server_final) = first.finish(last.as_bytes())?;
        assert_eq!(user, "alice");
        assert_eq!(server_final, want);
        Ok(user)
    }

    #[test]
    fn both_mechanisms_accept_the_password_and_refuse_others() {
        for mech in Mechanism::ALL {
            let cred = Credential::from_password(mech, "s3cret", 4096);
            assert_eq!(exchange(mech, &cred, "s3cret").unwrap(), "alice");
            assert_eq!(
                exchange(mech, &cred, "wrong"),
                Err(ScramError::InvalidCredentials)
            );
            assert!(cred.verify_password(mech, "s3cret"));
            assert!(!cred.verify_password(mech, "s3cret "));
        }
    }

    #[test]
    fn an_unknown_user_gets_a_stable_made_up_salt_and_fails_at_the_proof() {
        let mech = Mechanism::Sha512;
        let a = ServerFirst::start(mech, b"n,,n=bob,r=abc", |_| None, b"key").unwrap();
        let b = ServerFirst::start(mech, b"n,,n=bob,r=abc", |_| None, b"key").unwrap();
        let salt = |m: &str| m.split(',').nth(1).unwrap().to_string();
        assert_eq!(salt(a.message()), salt(b.message()));
        let c = Client {
            mech,
            user: "bob".into(),
            password: "x".into(),
            nonce: "abc".into(),
        };
        let (last, _) = c.last(a.message());
        assert_eq!(
            a.finish(last.as_bytes()),
            Err(ScramError::InvalidCredentials)
        );
    }

    #[test]
    fn malformed_messages_are_refused_without_panicking() {
        let mech = Mechanism::Sha256;
        for bad in [
            &b""[..],
            b"n",
            b"n,,",
            b"x,,n=a,r=b",
            b"p=tls-unique,,n=a,r=b",
            b"n,,n=a",
            b"n,,r=b",
            b"n,a=other,n=a,r=b",
            b"n,,n=a=zz,r=b",
            b"n,,m=ext,n=a,r=b",
            &[0xff, 0xfe],
        ] {
            assert!(
                ServerFirst::start(mech, bad, |_| None, b"k").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let cred = Credential::from_password(mech, "pw", 4096);
        for bad in [
            &b""[..],
            b"c=biws,r=zzz,p=AAAA",
            b"c=biws,p=AAAA",
            b"r=x,p=AAAA",
            b"c=cD10bHM=,r=x,p=AAAA",
            b"c=biws,r=abc,p=!!",
        ] {
            let first =
                ServerFirst::start(mech, b"n,,n=u,r=abc", |_| Some(cred.clone()), b"k").unwrap();
            assert!(first.finish(bad).is_err());
        }
    }

    #[test]
    fn user_names_are_decoded() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert!(decode_saslname("a=2").is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_messages_never_panic(a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
                                          b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let cred = Credential::from_password(Mechanism::Sha256, "pw", 4096);
            if let Ok(first) = ServerFirst::start(Mechanism::Sha256, &a, |_| Some(cred.clone()), b"k") {
                let _ = first.finish(&b);
            }
        }
    }
}

#[cfg(test)]
impl Credential {
    fn from_password_with_salt(mech: Mechanism, password: &str, salt: &[u8], i: u32) -> Self {
        let salted = mech.salted_password(password.as_bytes(), salt, i);
        Self::from_salted_password(mech, &salted, salt, i)
    }
}
