//! The HTTP API: Confluent REST Proxy v3 where v3 has the operation
//! (clusters, topics, produce), silt extensions for fetching records and
//! consumer-group offsets (`docs/http-api.md`).
//!
//! One axum router over the same library as the Kafka listener: produce
//! goes through the segment writer and commit, fetch through the read path.
//! An agent serves it on `--rest` ([`serve`]); the `silt-http` Lambda
//! function serves the same [`Api::router`].

mod admin;
mod fetch;
mod produce;

use std::{
    sync::{atomic::AtomicU32, Arc},
    time::Duration,
};

use axum::{
    body::Body,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use silt_coordinator::OffsetStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{clock::Clock, config::Settings, fetch::ReadPath, produce::Producer, topics::Topics};

/// What bounds the API's work per request (named settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `rest_max_request_bytes`: one request body.
    pub max_request_bytes: usize,
    /// `rest_fetch_max_bytes`: record bytes one fetch reads.
    pub fetch_max_bytes: usize,
    /// `max_fetch_wait`: the longest long poll.
    pub max_fetch_wait: Duration,
    /// `offset_metadata_max_bytes`: metadata of one committed offset.
    pub offset_metadata_max_bytes: usize,
    /// `rest_max_records`: records in one produce request or fetch answer.
    pub max_records: usize,
    /// `rest_request_timeout`: time for a request body to arrive.
    pub request_timeout: Duration,
    /// `rest_buffer_bytes`: request bodies held at once.
    pub buffer_bytes: usize,
    /// `message_max_bytes`: the largest batch of a topic without
    /// `max.message.bytes`.
    pub message_max_bytes: u32,
}

impl Limits {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            max_request_bytes: s.rest_max_request_bytes.as_u64() as usize,
            fetch_max_bytes: s.rest_fetch_max_bytes.as_u64() as usize,
            max_fetch_wait: s.max_fetch_wait,
            offset_metadata_max_bytes: s.offset_metadata_max_bytes,
            max_records: s.rest_max_records,
            request_timeout: s.rest_request_timeout,
            message_max_bytes: s.message_max_bytes,
            buffer_bytes: s.rest_buffer_bytes.as_u64() as usize,
        }
    }

    /// A batch read for a fetch decompresses to at most this many bytes.
    fn max_decompressed(&self) -> usize {
        self.fetch_max_bytes.saturating_mul(8)
    }
}

/// The parts the API works with; an agent and the Lambda function build
/// one each from the same components.
pub struct Api {
    pub cluster_id: String,
    pub topics: Topics,
    pub read: ReadPath,
    pub producer: Producer,
    pub offsets: OffsetStore,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    /// Round-robin partitioner of records without key or partition.
    next_partition: AtomicU32,
    /// Bytes of request bodies held at once (`rest_buffer_bytes`).
    body_budget: Arc<tokio::sync::Semaphore>,
    /// Basic authentication and the authorizer (`rest_authentication`);
    /// `None`: every caller may do everything (the Lambda function sits
    /// behind IAM instead).
    pub auth: Option<Arc<crate::security::http_auth::HttpAuth>>,
    /// Whether callers must authenticate (`rest_authentication = "basic"`);
    /// without, under the authorizer, they are `User:ANONYMOUS`.
    pub basic: bool,
}

/// Who is calling, set by the authentication layer.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `User:NAME`.
    pub principal: String,
    /// The client's IP address, as ACLs name hosts.
    pub host: String,
}

/// The client's address, set per connection by [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::IpAddr);

impl Api {
    pub fn new(
        cluster_id: String,
        topics: Topics,
        read: ReadPath,
        producer: Producer,
        offsets: OffsetStore,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            cluster_id,
            topics,
            read,
            producer,
            offsets,
            clock,
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                limits.buffer_bytes.clamp(1, u32::MAX as usize),
            )),
            limits,
            next_partition: AtomicU32::new(0),
            auth: None,
            basic: false,
        }
    }

    /// The authorizer's yes for every request, and Basic authentication
    /// if `basic` (else callers are `User:ANONYMOUS`).
    pub fn with_auth(
        mut self,
        auth: Arc<crate::security::http_auth::HttpAuth>,
        basic: bool,
    ) -> Self {
        self.auth = Some(auth);
        self.basic = basic;
        self
    }

    /// 403 unless the caller may do `operation` on the resource (always
    /// yes without authentication).
    fn allow(
        &self,
        caller: &Option<axum::Extension<Caller>>,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> Result<(), ApiError> {
        if self.may(caller, operation, resource_type, name) {
            return Ok(());
        }
        use crate::security::acl::resource;
        let what = match resource_type {
            resource::TOPIC => "topics",
            resource::GROUP => "groups",
            _ => "the cluster",
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            40301,
            format!("Not authorized to access {what}: [{name}]"),
        ))
    }

    fn may(
        &self,
        caller: &Option<axum::Extension<Caller>>,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        let Some(auth) = &self.auth else {
            return true;
        };
        let Some(axum::Extension(c)) = caller else {
            return false;
        };
        auth.security
            .authorize(&c.principal, &c.host, operation, resource_type, name)
    }

    /// The router: every route of `docs/http-api.md`.
    pub fn router(self: Arc<Self>) -> Router {
        use axum::routing::post;
        let c = "/v3/clusters/{cluster_id}";
        Router::new()
            .route("/v3/clusters", get(admin::clusters))
            .route(c, get(admin::cluster))
            .route(
                &format!("{c}/topics"),
                get(admin::topics).post(admin::create_topic),
            )
            .route(
                &format!("{c}/topics/{{topic}}"),
                get(admin::topic).delete(admin::delete_topic),
            )
            .route(
                &format!("{c}/topics/{{topic}}/partitions"),
                get(admin::partitions),
            )
            .route(
                &format!("{c}/topics/{{topic}}/partitions/{{partition}}"),
                get(admin::partition),
            )
            .route(
                &format!("{c}/topics/{{topic}}/records"),
                post(produce::produce),
            )
            .route(
                &format!("{c}/topics/{{topic}}/partitions/{{partition}}/records"),
                get(fetch::fetch),
            )
            .route(
                &format!("{c}/consumer-groups/{{group}}/offsets"),
                get(admin::get_offsets).post(admin::commit_offsets),
            )
            .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, 404, "no such route") })
            .method_not_allowed_fallback(|| async {
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 405, "method not allowed")
            })
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                authenticate,
            ))
            // Outside the authentication layer: health stays open.
            .route("/health", get(|| async { "ok\n" }))
            .with_state(self)
    }

    /// `404` unless `id` is this cluster.
    fn check_cluster(&self, id: &str) -> Result<(), ApiError> {
        if id == self.cluster_id {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                404,
                format!("cluster {id:?} is not this cluster ({:?})", self.cluster_id),
            ))
        }
    }

    /// The topic, or `404`/40401. A topic not known here is looked up
    /// again once this process has caught up with the metadata store, so a
    /// topic created elsewhere a moment ago (or while a Lambda function
    /// was frozen) is found.
    async fn topic(&self, name: &str) -> Result<crate::topics::TopicInfo, ApiError> {
        if let Some(t) = self.topics.get(name) {
            return Ok(t);
        }
        self.read.catch_up().await;
        self.topics.get(name).ok_or_else(|| unknown_topic(name))
    }

    /// The partition number in a path, checked against the topic.
    async fn partition(
        &self,
        topic: &str,
        partition: &str,
    ) -> Result<(crate::topics::TopicInfo, i32), ApiError> {
        let mut info = self.topic(topic).await?;
        let p: i32 = partition.parse().map_err(|_| {
            ApiError::bad_request(format!("partition {partition:?} is not a number"))
        })?;
        if p >= 0 && p as usize >= info.partitions {
            // Partitions added elsewhere a moment ago.
            self.read.catch_up().await;
            info = self.topic(topic).await?;
        }
        if p < 0 || p as usize >= info.partitions {
            return Err(unknown_partition(topic, p));
        }
        Ok((info, p))
    }

    /// The URL of a resource, as Confluent's `metadata.self`.
    fn url(&self, path: &str) -> String {
        format!("/v3/clusters/{}{path}", self.cluster_id)
    }
}

fn unknown_topic(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        40401,
        format!("topic {name:?} does not exist"),
    )
}

fn unknown_partition(topic: &str, p: i32) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        40402,
        format!("partition {p} of topic {topic:?} does not exist"),
    )
}

/// An error answer: `{error_code, message}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 400, message)
    }

    /// Retriable: nothing was acknowledged.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, 50003, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({"error_code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// Path parameters, or a JSON `400` when they do not decode (bad percent
/// encoding, not UTF-8).
pub(super) struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(Params(t)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

impl Api {
    /// Reads a request body of at most `rest_max_request_bytes` (`413`
    /// beyond) within `rest_request_timeout`, holding its share of
    /// `rest_buffer_bytes` (the bodies held at once across connections)
    /// until the returned permit is dropped.
    async fn read_body(
        &self,
        body: Body,
    ) -> Result<(bytes::Bytes, tokio::sync::OwnedSemaphorePermit), ApiError> {
        use axum::body::HttpBody as _;
        let limit = self.limits.max_request_bytes;
        let share = body
            .size_hint()
            .exact()
            .map_or(limit, |n| (n as usize).min(limit))
            .clamp(1, u32::MAX as usize) as u32;
        let permit = self
            .body_budget
            .clone()
            .acquire_many_owned(share)
            .await
            .map_err(|_| ApiError::unavailable("shutting down"))?;
        let read = tokio::time::timeout(
            self.limits.request_timeout,
            axum::body::to_bytes(body, limit),
        );
        let bytes = match read.await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                return Err(if too_large {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        413,
                        format!("request body above rest_max_request_bytes ({limit} bytes)"),
                    )
                } else {
                    ApiError::bad_request(format!("reading the request body: {e}"))
                });
            }
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    408,
                    format!(
                        "the request body did not arrive within rest_request_timeout ({:?})",
                        self.limits.request_timeout
                    ),
                ))
            }
        };
        Ok((bytes, permit))
    }
}

/// Parses `a=1&b=x` (values used here need no percent-decoding).
fn query_params(q: Option<&str>) -> Vec<(&str, &str)> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect()
}

/// Serves `api` on `listener` until `shutdown`: HTTP/1.1, at most
/// `max_connections` open connections (more wait to be accepted), an idle
/// connection closed after `idle`.
/// Basic authentication of every route but `/health`, when configured:
/// the caller is put in the request for the handlers' authorization.
async fn authenticate(
    axum::extract::State(api): axum::extract::State<Arc<Api>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(auth) = &api.auth else {
        return next.run(req).await;
    };
    let ip = req
        .extensions()
        .get::<Peer>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0.to_canonical());
    if !api.basic {
        req.extensions_mut().insert(Caller {
            principal: crate::security::ANONYMOUS.to_string(),
            host: ip.to_string(),
        });
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.authenticate(header, ip).await {
        Ok(principal) => {
            req.extensions_mut().insert(Caller {
                principal,
                host: ip.to_string(),
            });
            next.run(req).await
        }
        Err(_) => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                40101,
                "Authentication failed: give a user and password (HTTP Basic)",
            )
            .into_response();
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"silt\""),
            );
            r
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    api: Arc<Api>,
    max_connections: usize,
    idle: Duration,
    tls: Option<Arc<crate::security::tls::Reloading>>,
    shutdown: CancellationToken,
) {
    let router = api.router();
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accepting an HTTP connection failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(
            router.clone().layer(axum::Extension(Peer(peer.ip()))),
        );
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, service, idle, shutdown).await,
                Some(tls) => {
                    match tokio::time::timeout(
                        Duration::from_secs(10),
                        tls.acceptor().accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => serve_connection(s, service, idle, shutdown).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "HTTP TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "HTTP TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<I>(
    io: I,
    service: hyper_util::service::TowerToHyperService<Router>,
    idle: Duration,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        }
        _ = shutdown.cancelled() => {
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        }
    }
}

#[cfg(test)]
mod tests;
