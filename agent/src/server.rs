//! The Kafka listener: framing, header decoding, version checks, and
//! in-order responses for pipelined requests.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind},
    protocol::{Decodable, Encodable},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    broker::Broker,
    protocol::{self, Conn},
    security::{
        principal::subject_dn,
        sasl::{Session, Step},
        Protocol, ANONYMOUS,
    },
};

/// A bound Kafka listener and its security protocol.
pub struct Listening {
    pub listener: TcpListener,
    pub protocol: Protocol,
}

/// Time a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An encoded response, with the budget it holds until written.
type Frame = (Bytes, Option<OwnedSemaphorePermit>);

/// Requests a connection may have in flight before reading pauses.
/// Produce responses wait for a flush (250 ms by default) and librdkafka
/// sends one request per partition, so a producer writing many partitions
/// keeps thousands in flight. Memory stays bounded: produced bytes hold
/// the in-flight byte budget before they are queued.
const PIPELINE_DEPTH: usize = 4096;

/// Accepts connections on every listener until `shutdown` fires, then
/// waits for every connection to finish its in-flight requests.
pub async fn run(listeners: Vec<Listening>, broker: Arc<Broker>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(broker.settings.max_connections));
    let mut accepting = Vec::new();
    for l in listeners {
        accepting.push(tokio::spawn(accept_loop(
            l,
            broker.clone(),
            slots.clone(),
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    for a in accepting {
        let _ = a.await;
    }
    tracker.close();
    tracker.wait().await;
}

async fn accept_loop(
    l: Listening,
    broker: Arc<Broker>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut refused = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = l.listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        // Closing at once tells the client to try another agent.
                        refused += 1;
                        crate::metrics::global().closed("max_connections");
                        if refused.is_power_of_two() {
                            tracing::warn!(%peer, max_connections = broker.settings.max_connections, refused, "connection refused: max_connections reached");
                        }
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    let protocol = l.protocol;
                    tracker.spawn(async move {
                        let metrics = crate::metrics::global();
                        metrics.connections_accepted.inc();
                        let open = crate::metrics::Held::new(&metrics.connections_open);
                        if let Err(reason) = accept(stream, peer, protocol, broker, shutdown).await {
                            if let Some(why) = close_reason(&reason) {
                                metrics.closed(why);
                            }
                            tracing::debug!(%peer, listener = protocol.name(), %reason, "connection closed");
                        }
                        drop(open);
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// The metric label of why the agent closed a connection; `None` when the
/// client went away (a read or write failed).
fn close_reason(reason: &str) -> Option<&'static str> {
    if reason.starts_with("idle for") {
        Some("idle")
    } else if reason.contains("SASL")
        || reason.contains("authenticat")
        || reason.starts_with("TLS handshake")
    {
        Some("authentication")
    } else if ["frame", "unsupported", "unknown API", "bad ", "unexpected"]
        .iter()
        .any(|p| reason.starts_with(p))
    {
        Some("protocol")
    } else {
        None
    }
}

/// The TLS handshake where the listener has TLS, then the connection.
async fn accept(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    protocol: Protocol,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    if !protocol.tls() {
        return connection(
            stream,
            peer,
            protocol,
            ANONYMOUS.to_string(),
            broker,
            shutdown,
        )
        .await;
    }
    let Some(tls) = broker.security.tls.clone() else {
        return Err("no TLS configuration".into());
    };
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream))
        .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, listener = protocol.name(), error = %e, "TLS handshake failed");
            return Err(format!("TLS handshake: {e}"));
        }
        Err(_) => return Err("TLS handshake timed out".into()),
    };
    // A verified client certificate names the principal (Kafka's default
    // principal builder); SASL replaces it on SASL_SSL.
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| subject_dn(c.as_ref()))
        .map_or_else(|| ANONYMOUS.to_string(), |dn| format!("User:{dn}"));
    connection(stream, peer, protocol, principal, broker, shutdown).await
}

enum Next {
    Frame(BytesMut),
    Closed,
}

/// The longest raw SASL token (after a SaslHandshake v0) accepted.
const MAX_RAW_SASL_TOKEN: usize = 64 * 1024;
/// The largest request of a connection that has not authenticated yet
/// (Kafka's `sasl.server.max.receive.size`).
const MAX_UNAUTHENTICATED_REQUEST: usize = 512 * 1024;
/// Time a SASL connection has to authenticate.
const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    max: usize,
    raw_sasl: bool,
) -> Result<Next, String> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Next::Closed),
        Err(e) => return Err(e.to_string()),
    }
    let len = i32::from_be_bytes(len);
    let (min, max) = if raw_sasl {
        (0, MAX_RAW_SASL_TOKEN.min(max))
    } else {
        (8, max)
    };
    if len < min {
        return Err(format!(
            "frame length {len} is too small for a request header"
        ));
    }
    if len as usize > max {
        return Err(format!(
            "frame of {len} bytes exceeds max_request_bytes {max}"
        ));
    }
    // Read into uninitialised capacity: zeroing first cost 5 % of the CPU
    // of a produce-heavy agent.
    let mut buf = BytesMut::with_capacity(len as usize);
    while buf.len() < len as usize {
        let mut limited = (&mut *rd).take((len as usize - buf.len()) as u64);
        match limited.read_buf(&mut buf).await {
            Ok(0) => return Err(format!("truncated frame: {} of {len} bytes", buf.len())),
            Ok(_) => {}
            Err(e) => return Err(format!("truncated frame of {len} bytes: {e}")),
        }
    }
    Ok(Next::Frame(buf))
}

async fn connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    peer_addr: std::net::SocketAddr,
    protocol: Protocol,
    principal: String,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    // Kafka reports a member's host as "/ip"; ACLs name the bare address.
    let peer = format!("/{}", peer_addr.ip());
    let budget = (broker.settings.connection_response_bytes.as_u64() as usize)
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let mut session = Session::new();
    if !protocol.sasl() {
        session.principal = Some(principal);
    }
    let mut conn = Conn {
        peer,
        host: peer_addr.ip().to_canonical().to_string(),
        principal: session.principal.clone().unwrap_or_default(),
        listener: protocol,
        responses: Arc::new(Semaphore::new(budget)),
        response_budget: budget,
        group_waits: Arc::new(Semaphore::new(
            broker.settings.max_group_waits_per_connection.max(1),
        )),
    };
    let idle = broker.settings.connections_max_idle;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<JoinHandle<Option<Frame>>>(PIPELINE_DEPTH);
    let writer = tokio::spawn(async move {
        while let Some(handle) = rx.recv().await {
            match handle.await {
                Ok(Some((frame, _budget))) => {
                    // A response that could not be encoded: closing tells
                    // the client at once (it would otherwise wait for its
                    // request timeout) and it retries on a new connection.
                    if frame.is_empty() {
                        return;
                    }
                    if wr.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "request handler failed; closing connection");
                    return;
                }
            }
        }
        let _ = wr.shutdown().await;
    });
    let max = broker.settings.max_request_bytes.as_u64() as usize;
    // After a SaslHandshake v0 the client sends its SASL tokens as bare
    // length-prefixed frames, without a Kafka request around them.
    let mut raw_sasl = false;
    let result = loop {
        let (limit, wait) = if session.principal.is_none() {
            (
                max.min(MAX_UNAUTHENTICATED_REQUEST),
                idle.min(LOGIN_TIMEOUT),
            )
        } else {
            (max, idle)
        };
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            f = tokio::time::timeout(wait, read_frame(&mut rd, limit, raw_sasl)) => match f {
                Ok(f) => f,
                Err(_) => break Err(format!("idle for {idle:?} (connections_max_idle)")),
            },
        };
        let buf = match frame {
            Ok(Next::Frame(b)) => b.freeze(),
            Ok(Next::Closed) => break Ok(()),
            Err(e) => break Err(e),
        };
        if raw_sasl {
            let token =
                kafka_protocol::messages::SaslAuthenticateRequest::default().with_auth_bytes(buf);
            let step = session
                .authenticate(&broker.security.sasl, &token, 0, peer_addr.ip())
                .await;
            let ResponseKind::SaslAuthenticate(reply) = (match &step {
                Step::Reply(k) | Step::Fail(k, _) => k.clone(),
            }) else {
                break Err("unexpected SASL reply".into());
            };
            if let Step::Fail(_, delay) = step {
                // v0 has no way to say why: the connection is closed.
                tokio::time::sleep(delay).await;
                break Err("authentication failed".into());
            }
            let mut frame = BytesMut::with_capacity(4 + reply.auth_bytes.len());
            frame.put_i32(reply.auth_bytes.len() as i32);
            frame.put_slice(&reply.auth_bytes);
            let frame = frame.freeze();
            if tx
                .send(tokio::spawn(async move { Some((frame, None)) }))
                .await
                .is_err()
            {
                break Err("writer closed".into());
            }
            if let Some(p) = &session.principal {
                if session.admits(ApiKey::Metadata) {
                    raw_sasl = false;
                    conn.principal = p.clone();
                }
            }
            continue;
        }
        match decode(buf) {
            Ok(Decoded::Request(boxed)) => {
                let (header, request) = *boxed;
                let key = ApiKey::try_from(header.request_api_key).ok();
                let (version, correlation_id) = (header.request_api_version, header.correlation_id);
                // SASL requests are answered here, in order, before the
                // next request is read.
                let step = match &request {
                    RequestKind::SaslHandshake(r) if protocol.sasl() => {
                        let step = session.handshake(&broker.security.sasl, r);
                        raw_sasl = version == 0 && matches!(step, Step::Reply(_));
                        Some(step)
                    }
                    RequestKind::SaslAuthenticate(r) if protocol.sasl() => Some(
                        session
                            .authenticate(&broker.security.sasl, r, version, peer_addr.ip())
                            .await,
                    ),
                    RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_) => {
                        break Err(format!("SASL request on a {} listener", protocol.name()));
                    }
                    _ => None,
                };
                if let Some(step) = step {
                    let (kind, close) = match step {
                        Step::Reply(kind) => (kind, None),
                        Step::Fail(kind, delay) => (kind, Some(delay)),
                    };
                    let handle = tokio::spawn(async move {
                        if let Some(delay) = close {
                            tokio::time::sleep(delay).await;
                        }
                        Some((encode_or_close(key?, version, correlation_id, &kind), None))
                    });
                    if tx.send(handle).await.is_err() {
                        break Err("writer closed".into());
                    }
                    if close.is_some() {
                        break Err("authentication failed".into());
                    }
                    if let Some(p) = &session.principal {
                        conn.principal = p.clone();
                    }
                    continue;
                }
                if !session.admits(key.unwrap_or(ApiKey::ApiVersions)) {
                    if session.principal.is_some() {
                        crate::security::sasl::EXPIRED
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    break Err(match &session.principal {
                        None => format!("{key:?} before SASL authentication"),
                        Some(_) => format!(
                            "{key:?} after the SASL session expired (connections_max_reauth)"
                        ),
                    });
                }
                let started = std::time::Instant::now();
                let reply = protocol::dispatch(broker.clone(), header, request, &conn).await;
                let handle = tokio::spawn(async move {
                    let response = reply.await;
                    if let Some(key) = key {
                        crate::metrics::global().request(
                            key,
                            started.elapsed().as_secs_f64(),
                            response.as_ref().map(|r| &r.kind),
                        );
                    }
                    let response = response?;
                    let frame = encode_or_close(key?, version, correlation_id, &response.kind);
                    Some((frame, response.budget))
                });
                if tx.send(handle).await.is_err() {
                    break Err("writer closed".into());
                }
            }
            Ok(Decoded::Immediate(frame)) => {
                if tx
                    .send(tokio::spawn(async move { Some((frame, None)) }))
                    .await
                    .is_err()
                {
                    break Err("writer closed".into());
                }
            }
            Err(e) => break Err(e),
        }
    };
    drop(tx);
    let _ = writer.await;
    result
}

enum Decoded {
    Request(Box<(RequestHeader, RequestKind)>),
    /// A response decided at decode time (ApiVersions version fallback).
    Immediate(Bytes),
}

fn decode(mut buf: Bytes) -> Result<Decoded, String> {
    let key_raw = (&buf[0..2]).get_i16();
    let version = (&buf[2..4]).get_i16();
    let correlation_id = (&buf[4..8]).get_i32();
    let key = ApiKey::try_from(key_raw).map_err(|_| format!("unknown API key {key_raw}"))?;
    let Some((min, max)) = protocol::supported(key_raw) else {
        return Err(format!("unsupported API {key:?} (key {key_raw})"));
    };
    if version < min || version > max {
        if key == ApiKey::ApiVersions {
            // Kafka answers with v0 and the versions it supports.
            let resp = ResponseKind::ApiVersions(protocol::unsupported_version_response());
            return encode(key, 0, correlation_id, &resp)
                .map(Decoded::Immediate)
                .ok_or_else(|| "encoding ApiVersions fallback failed".to_string());
        }
        return Err(format!(
            "unsupported version {version} of {key:?} (supported {min}..={max})"
        ));
    }
    let header = RequestHeader::decode(&mut buf, key.request_header_version(version))
        .map_err(|e| format!("bad request header for {key:?} v{version}: {e}"))?;
    let request = RequestKind::decode(key, &mut buf, version)
        .map_err(|e| format!("bad {key:?} v{version} request: {e}"))?;
    Ok(Decoded::Request(Box::new((header, request))))
}

/// The response frame, or an empty one (the connection is closed) when the
/// response cannot be encoded in the request's version.
fn encode_or_close(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Bytes {
    encode(key, version, correlation_id, response).unwrap_or_default()
}

fn encode(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Option<Bytes> {
    let mut body = BytesMut::new();
    body.put_i32(0);
    // ApiVersions responses always use header v0 so old clients can parse them.
    let header_version = if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    };
    let result = ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut body, header_version)
        .and_then(|_| response.encode(&mut body, version));
    if let Err(e) = result {
        tracing::error!(api = ?key, version, error = %e, "encoding response failed");
        return None;
    }
    let len = (body.len() - 4) as i32;
    body[0..4].copy_from_slice(&len.to_be_bytes());
    Some(body.freeze())
}

/// Entry point for the request-decoder fuzz target and property tests:
/// decodes one frame body as the server would; never panics.
pub fn decode_frame_for_fuzzing(data: &[u8]) -> bool {
    data.len() >= 8 && decode(Bytes::copy_from_slice(data)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 8..1024)) {
            decode_frame_for_fuzzing(&data);
        }

        /// A valid header of a supported API and version followed by
        /// arbitrary bytes exercises the body decoders.
        #[test]
        fn arbitrary_bodies_never_panic(
            which in 0usize..14,
            v in 0i16..20,
            flexible_client in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let keys = [0i16, 1, 2, 3, 18, 19, 20, 17, 36, 29, 30, 31, 50, 51];
            let key = keys[which];
            let (min, max) = protocol::supported(key).unwrap();
            let version = min + v % (max - min + 1);
            let mut frame = BytesMut::new();
            frame.put_i16(key);
            frame.put_i16(version);
            frame.put_i32(1);
            frame.put_i16(if flexible_client { 3 } else { -1 });
            if flexible_client {
                frame.put_slice(b"abc");
            }
            frame.put_slice(&body);
            decode_frame_for_fuzzing(&frame);
        }
    }
}
