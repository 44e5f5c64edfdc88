//! [`MetaStore`] on etcd v3, through the `etcd-client` crate.
//!
//! A thin translation: every operation maps to one etcd call. Transport
//! errors become [`MetaError::Unavailable`] (callers retry); a watch whose
//! start revision was compacted ends with [`MetaError::Compacted`].

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client as etcd;

use crate::metastore::*;

/// etcd accepts requests up to `--max-request-bytes` (1.5 MiB by default)
/// plus 512 KiB of gRPC overhead; larger ones fail on the server anyway.
pub const MAX_ENCODING_BYTES: usize = 2 * 1024 * 1024;
/// Responses (ranges over the log, watch batches) may be larger than
/// requests; etcd itself sends up to 2 GiB.
pub const MAX_DECODING_BYTES: usize = 256 * 1024 * 1024;

#[derive(Clone)]
pub struct EtcdStore {
    kv: etcd::KvClient,
    watch: etcd::WatchClient,
    lease: etcd::LeaseClient,
}

fn unavailable(e: etcd::Error) -> MetaError {
    let text = e.to_string();
    if text.contains("lease not found") {
        return MetaError::LeaseNotFound(0);
    }
    MetaError::Unavailable(text)
}

/// Whether the request never reached etcd (the connection to the chosen
/// endpoint failed), so sending it again cannot apply it twice.
fn not_sent(e: &etcd::Error) -> bool {
    let text = e.to_string();
    text.contains("tcp connect error")
        || text.contains("Connection refused")
        || text.contains("error trying to connect")
}

/// The client balances over all endpoints but keeps choosing a member that
/// is down; a request that could not even connect is sent again, which
/// lands on another endpoint with high probability.
const CONNECT_ATTEMPTS: usize = 8;

macro_rules! retry_unsent {
    ($call:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            match $call {
                Err(e) if attempt < CONNECT_ATTEMPTS && not_sent(&e) => {
                    tokio::time::sleep(Duration::from_millis(20 * attempt as u64)).await;
                }
                other => break other,
            }
        }
    }};
}

/// How to reach etcd beyond its endpoints: TLS (`https://` endpoints) and
/// etcd's own users.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    /// PEM of the CA that signed the etcd servers' certificates; required
    /// for `https://` endpoints.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM certificate and key this client presents (etcd's
    /// `--client-cert-auth`).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// etcd user name and password (etcd's `auth enable`).
    pub user: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl EtcdStore {
    /// Connects to the given endpoints (`http://host:port`, or
    /// `https://host:port` with `access.ca_pem`).
    pub async fn connect(endpoints: &[String], access: &EtcdAccess) -> Result<Self> {
        let mut options = etcd::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_require_leader(true);
        if endpoints.iter().any(|e| e.starts_with("https://")) {
            let Some(ca) = &access.ca_pem else {
                return Err(MetaError::Unavailable(
                    "https:// etcd endpoints need the CA of their certificates (etcd_ca_file)"
                        .into(),
                ));
            };
            let mut tls = etcd::TlsOptions::new().ca_certificate(etcd::Certificate::from_pem(ca));
            if let Some((cert, key)) = &access.identity {
                tls = tls.identity(etcd::Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        } else if access.identity.is_some() {
            return Err(MetaError::Unavailable(
                "a client certificate for etcd needs https:// endpoints".into(),
            ));
        }
        if let Some((user, password)) = &access.user {
            options = options.with_user(user.clone(), password.clone());
        }
        let client = etcd::Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| {
                MetaError::Unavailable(format!("connecting to etcd {}: {e}", endpoints.join(",")))
            })?;
        Ok(Self {
            kv: client
                .kv_client()
                .max_encoding_message_size(MAX_ENCODING_BYTES)
                .max_decoding_message_size(MAX_DECODING_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_DECODING_BYTES),
            lease: client.lease_client(),
        })
    }
}

fn kv(kv: &etcd::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn key_and_get(range: &KeyRange) -> (String, Option<etcd::GetOptions>) {
    match range {
        KeyRange::Key(k) => (k.clone(), None),
        KeyRange::Prefix(p) => (p.clone(), Some(etcd::GetOptions::new().with_prefix())),
    }
}

fn key_and_delete(range: &KeyRange) -> (String, Option<etcd::DeleteOptions>) {
    match range {
        KeyRange::Key(k) => (k.clone(), None),
        KeyRange::Prefix(p) => (p.clone(), Some(etcd::DeleteOptions::new().with_prefix())),
    }
}

fn revision_of(header: Option<&etcd::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

fn compare(c: &Compare) -> etcd::Compare {
    let op = match c.op {
        CompareOp::Equal => etcd::CompareOp::Equal,
        CompareOp::NotEqual => etcd::CompareOp::NotEqual,
        CompareOp::Greater => etcd::CompareOp::Greater,
        CompareOp::Less => etcd::CompareOp::Less,
    };
    let key = c.key.clone();
    match &c.target {
        CompareTarget::Version(v) => etcd::Compare::version(key, op, *v),
        CompareTarget::CreateRevision(r) => etcd::Compare::create_revision(key, op, *r),
        CompareTarget::ModRevision(r) => etcd::Compare::mod_revision(key, op, *r),
        CompareTarget::Value(v) => etcd::Compare::value(key, op, v.to_vec()),
    }
}

fn txn_op(op: &TxnOp) -> etcd::TxnOp {
    match op {
        TxnOp::Put { key, value, lease } => {
            let options = lease
                .filter(|l| *l != 0)
                .map(|l| etcd::PutOptions::new().with_lease(l));
            etcd::TxnOp::put(key.clone(), value.to_vec(), options)
        }
        TxnOp::Delete(range) => {
            let (k, o) = key_and_delete(range);
            etcd::TxnOp::delete(k, o)
        }
        TxnOp::Range(range) => {
            let (k, o) = key_and_get(range);
            etcd::TxnOp::get(k, o)
        }
    }
}

#[async_trait]
impl MetaStore for EtcdStore {
    async fn range(&self, range: KeyRange) -> Result<RangeResponse> {
        let (k, o) = key_and_get(&range);
        let resp =
            retry_unsent!(self.kv.clone().get(k.clone(), o.clone()).await).map_err(unavailable)?;
        Ok(RangeResponse {
            kvs: resp.kvs().iter().map(kv).collect(),
            revision: revision_of(resp.header()),
        })
    }

    async fn latest_mod_revision(&self, prefix: &str) -> Result<Option<Revision>> {
        let o = etcd::GetOptions::new()
            .with_prefix()
            .with_sort(etcd::SortTarget::Mod, etcd::SortOrder::Descend)
            .with_limit(1)
            .with_keys_only();
        let resp = retry_unsent!(self.kv.clone().get(prefix, Some(o.clone())).await)
            .map_err(unavailable)?;
        Ok(resp.kvs().first().map(|kv| kv.mod_revision()))
    }

    async fn put(&self, key: &str, value: Bytes, lease: Option<LeaseId>) -> Result<Revision> {
        let options = lease
            .filter(|l| *l != 0)
            .map(|l| etcd::PutOptions::new().with_lease(l));
        let resp = retry_unsent!(
            self.kv
                .clone()
                .put(key, value.to_vec(), options.clone())
                .await
        )
        .map_err(|e| match &e {
            etcd::Error::GRpcStatus(s) if s.message().contains("lease not found") => {
                MetaError::LeaseNotFound(lease.unwrap_or(0))
            }
            _ => unavailable(e),
        })?;
        Ok(revision_of(resp.header()))
    }

    async fn delete(&self, range: KeyRange) -> Result<(u64, Revision)> {
        let (k, o) = key_and_delete(&range);
        let resp = retry_unsent!(self.kv.clone().delete(k.clone(), o.clone()).await)
            .map_err(unavailable)?;
        Ok((resp.deleted() as u64, revision_of(resp.header())))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let t = etcd::Txn::new()
            .when(txn.compares.iter().map(compare).collect::<Vec<_>>())
            .and_then(txn.success.iter().map(txn_op).collect::<Vec<_>>())
            .or_else(txn.failure.iter().map(txn_op).collect::<Vec<_>>());
        let resp = retry_unsent!(self.kv.clone().txn(t.clone()).await).map_err(|e| match &e {
            etcd::Error::GRpcStatus(s) if s.message().contains("lease not found") => {
                MetaError::LeaseNotFound(0)
            }
            _ => unavailable(e),
        })?;
        let responses = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                etcd::TxnOpResponse::Put(_) => TxnOpResponse::Put,
                etcd::TxnOpResponse::Delete(d) => TxnOpResponse::Delete {
                    deleted: d.deleted() as u64,
                },
                etcd::TxnOpResponse::Get(g) => {
                    TxnOpResponse::Range(g.kvs().iter().map(kv).collect())
                }
                etcd::TxnOpResponse::Txn(_) => TxnOpResponse::Put,
            })
            .collect();
        Ok(TxnResponse {
            succeeded: resp.succeeded(),
            revision: revision_of(resp.header()),
            responses,
        })
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        let resp = retry_unsent!(
            self.lease
                .clone()
                .grant(ttl.as_secs().max(1) as i64, None)
                .await
        )
        .map_err(unavailable)?;
        Ok(resp.id())
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<()> {
        // One keep-alive round trip on a fresh stream; the whole exchange is
        // repeated when its connection failed (the refresh is idempotent).
        async fn once(
            client: &mut etcd::LeaseClient,
            lease: LeaseId,
        ) -> std::result::Result<Option<i64>, etcd::Error> {
            let (mut keeper, mut stream) = client.keep_alive(lease).await?;
            keeper.keep_alive().await?;
            Ok(stream.message().await?.map(|r| r.ttl()))
        }
        let mut client = self.lease.clone();
        let result = retry_unsent!(once(&mut client, lease).await);
        match result.map_err(unavailable) {
            Ok(Some(ttl)) if ttl > 0 => Ok(()),
            Ok(Some(_)) | Err(MetaError::LeaseNotFound(_)) => Err(MetaError::LeaseNotFound(lease)),
            Ok(None) => Err(MetaError::Unavailable(
                "lease keep-alive stream closed".into(),
            )),
            Err(e) => Err(e),
        }
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<()> {
        match retry_unsent!(self.lease.clone().revoke(lease).await) {
            Ok(_) => Ok(()),
            Err(etcd::Error::GRpcStatus(s)) if s.message().contains("lease not found") => {
                Err(MetaError::LeaseNotFound(lease))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn watch(&self, range: KeyRange, start: Revision) -> Result<WatchStream> {
        let (key, prefix) = match &range {
            KeyRange::Key(k) => (k.clone(), false),
            KeyRange::Prefix(p) => (p.clone(), true),
        };
        let mut options = etcd::WatchOptions::new().with_start_revision(start);
        if prefix {
            options = options.with_prefix();
        }
        let stream = self
            .watch
            .clone()
            .watch(key, Some(options))
            .await
            .map_err(unavailable)?;
        let out = futures::stream::unfold(Some(stream), move |state| async move {
            let mut stream = state?;
            loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        if resp.canceled() {
                            let err = if resp.compact_revision() > 0 {
                                MetaError::Compacted {
                                    requested: start,
                                    compacted: resp.compact_revision(),
                                }
                            } else {
                                MetaError::Unavailable(format!(
                                    "watch cancelled: {}",
                                    resp.cancel_reason()
                                ))
                            };
                            return Some((Err(err), None));
                        }
                        let events: Vec<Event> = resp
                            .events()
                            .iter()
                            .filter_map(|e| {
                                let k = e.kv()?;
                                let kind = match e.event_type() {
                                    etcd::EventType::Put => EventKind::Put,
                                    etcd::EventType::Delete => EventKind::Delete,
                                };
                                Some(Event { kind, kv: kv(k) })
                            })
                            .collect();
                        if !events.is_empty() {
                            return Some((Ok(events), Some(stream)));
                        }
                    }
                    Ok(None) => {
                        return Some((
                            Err(MetaError::Unavailable("watch stream ended".into())),
                            None,
                        ));
                    }
                    Err(e) => return Some((Err(unavailable(e)), None)),
                }
            }
        });
        Ok(Box::pin(out))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match retry_unsent!(self.kv.clone().compact(revision, None).await) {
            Ok(_) => Ok(()),
            // Already compacted past it: nothing to do.
            Err(etcd::Error::GRpcStatus(s)) if s.message().contains("compacted") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
