//! Who may connect and what they may do: listeners with Kafka's security
//! protocols (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), SASL with PLAIN
//! and SCRAM, users and ACLs kept in the metadata store, and Kafka's
//! authorizer rules (decision 0010).

pub mod acl;
pub mod http_auth;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod store;
pub mod tls;

use std::{net::SocketAddr, sync::Arc};

/// The principal of a connection that did not authenticate (Kafka's).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Kafka's security protocols; a listener is named by its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PLAINTEXT" => Self::Plaintext,
            "SSL" => Self::Ssl,
            "SASL_PLAINTEXT" => Self::SaslPlaintext,
            "SASL_SSL" => Self::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// `PROTOCOL://host:port,...` (Kafka's `listeners` form) into
/// (protocol, host, port), each protocol at most once.
pub fn parse_listeners(spec: &str) -> Result<Vec<(Protocol, String, u16)>, String> {
    let mut out: Vec<(Protocol, String, u16)> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (proto, addr) = item
            .split_once("://")
            .ok_or_else(|| format!("{item:?} is not PROTOCOL://HOST:PORT"))?;
        let proto = Protocol::parse(proto).ok_or_else(|| {
            format!("{proto:?} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        })?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("{item:?} has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{item:?}: {port:?} is not a port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if out.iter().any(|(p, _, _)| *p == proto) {
            return Err(format!("{} is listed twice", proto.name()));
        }
        out.push((proto, host, port));
    }
    if out.is_empty() {
        return Err("no listener".into());
    }
    Ok(out)
}

/// One bound listener of this agent.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub protocol: Protocol,
    pub bind: SocketAddr,
    /// What Metadata gives clients that connected here (None: the bound
    /// address).
    pub advertise: Option<(String, u16)>,
}

/// Everything the connections of an agent share about security.
pub struct Security {
    pub store: Arc<store::SecurityStore>,
    pub sasl: Arc<sasl::SaslContext>,
    pub tls: Option<Arc<tls::Reloading>>,
    /// Kafka's authorizer is on (`authorizer = "acl"`).
    pub acls_enabled: bool,
    pub policy: acl::Policy,
}

impl Security {
    /// Kafka's decision for a request; always yes without the authorizer.
    pub fn authorize(
        &self,
        principal: &str,
        host: &str,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        !self.acls_enabled
            || acl::authorize(
                &self.store.acls(),
                &self.policy,
                principal,
                host,
                operation,
                resource_type,
                name,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_as_kafka_writes_them() {
        let l = parse_listeners("PLAINTEXT://0.0.0.0:9092, SASL_SSL://[::1]:9094").unwrap();
        assert_eq!(
            l,
            vec![
                (Protocol::Plaintext, "0.0.0.0".into(), 9092),
                (Protocol::SaslSsl, "::1".into(), 9094)
            ]
        );
        for bad in [
            "",
            "FOO://a:1",
            "PLAINTEXT://a",
            "PLAINTEXT://a:x",
            "SSL://a:1,SSL://b:2",
            "a:1",
        ] {
            assert!(parse_listeners(bad).is_err(), "{bad}");
        }
    }
}
