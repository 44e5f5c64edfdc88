//! Object store wrappers, each around any `Arc<dyn ObjectStore>`: retries
//! of failed requests, request counting for metrics, and fault injection
//! for tests. The write and read paths never retry or count themselves.

use std::{
    fmt,
    ops::Range,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::{
    path::Path, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Labels of an object-store request: its operation and outcome.
pub type OpLabels = [(&'static str, &'static str); 2];

/// Request counters of an [`Instrumented`] store.
#[derive(Debug)]
pub struct StoreCounters {
    pub puts: AtomicU64,
    pub put_bytes: AtomicU64,
    pub gets: AtomicU64,
    pub get_bytes: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
    pub errors: AtomicU64,
    /// Request latency by operation and outcome (`ok`, `error`); for GET,
    /// the time to the response's headers.
    pub latency: crate::metrics::Histograms<OpLabels>,
}

impl Default for StoreCounters {
    fn default() -> Self {
        Self {
            puts: AtomicU64::new(0),
            put_bytes: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            get_bytes: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: crate::metrics::latency_family(),
        }
    }
}

impl StoreCounters {
    /// Writes the counters (the latency family is registered by the
    /// caller, as it is a live metric).
    pub fn encode(
        &self,
        enc: &mut prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            ("silt_object_store_puts", "PUT requests", c(&self.puts)),
            (
                "silt_object_store_put_bytes",
                "bytes uploaded",
                c(&self.put_bytes),
            ),
            (
                "silt_object_store_gets",
                "GET requests (ranged or whole)",
                c(&self.gets),
            ),
            (
                "silt_object_store_get_bytes",
                "bytes downloaded",
                c(&self.get_bytes),
            ),
            ("silt_object_store_lists", "LIST requests", c(&self.lists)),
            (
                "silt_object_store_deletes",
                "DELETE requests",
                c(&self.deletes),
            ),
            (
                "silt_object_store_errors",
                "failed requests",
                c(&self.errors),
            ),
        ] {
            crate::metrics::counter(enc, name, help, v)?;
        }
        Ok(())
    }

    fn observe(&self, operation: &'static str, started: std::time::Instant, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.latency
            .get_or_create(&[("operation", operation), ("outcome", outcome)])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A missing object is an answer, not a failed request.
fn is_not_found<T>(r: &Result<T>) -> bool {
    matches!(r, Err(object_store::Error::NotFound { .. }))
}

/// Counts requests and bytes to the wrapped store.
#[derive(Debug)]
pub struct Instrumented {
    inner: Arc<dyn ObjectStore>,
    pub counters: Arc<StoreCounters>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            counters: Arc::default(),
        }
    }

    /// Counts a failed request (a missing object is an answer, not a
    /// failure).
    fn count<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() && !is_not_found(&r) {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl fmt::Display for Instrumented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        self.counters
            .put_bytes
            .fetch_add(payload.content_length() as u64, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let r = self.inner.put_opts(location, payload, opts).await;
        self.counters.observe("put", started, r.is_ok());
        self.count(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.count(r)
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let op = if options.head { "head" } else { "get" };
        let r = self.inner.get_opts(location, options).await;
        self.counters
            .observe(op, started, r.is_ok() || is_not_found(&r));
        if let Ok(g) = &r {
            self.counters
                .get_bytes
                .fetch_add(g.range.end - g.range.start, Ordering::Relaxed);
        }
        self.count(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.counters
            .gets
            .fetch_add(ranges.len() as u64, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let r = self.inner.get_ranges(location, ranges).await;
        self.counters.observe("get", started, r.is_ok());
        if let Ok(v) = &r {
            let n: usize = v.iter().map(|b| b.len()).sum();
            self.counters
                .get_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        self.count(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.counters.deletes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let r = self.inner.list_with_delimiter(prefix).await;
        self.counters.observe("list", started, r.is_ok());
        self.count(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let started = std::time::Instant::now();
        let r = self.inner.copy_opts(from, to, options).await;
        self.counters.observe("copy", started, r.is_ok());
        self.count(r)
    }
}

/// How a [`Retrying`] store retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; each later wait is four times longer.
    pub backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(100),
        }
    }
}

/// Retries PUTs and GETs that failed for a reason that may pass (not a
/// missing key, a failed precondition or a denied request).
///
/// A create-only PUT whose first attempt failed may still have written
/// the object (the answer was lost). Object keys silt writes are unique to
/// their writer, so when a retry finds the key taken and the object there
/// has the payload's size, the earlier attempt wrote it: the PUT succeeded.
#[derive(Debug)]
pub struct Retrying {
    inner: Arc<dyn ObjectStore>,
    config: RetryConfig,
}

impl Retrying {
    pub fn new(inner: Arc<dyn ObjectStore>, config: RetryConfig) -> Self {
        Self { inner, config }
    }

    fn retriable(e: &object_store::Error) -> bool {
        !matches!(
            e,
            object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotModified { .. }
                | object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::UnknownConfigurationKey { .. }
        )
    }

    async fn backoff(&self, attempt: u32) {
        let wait = self.config.backoff * 4u32.saturating_pow(attempt.saturating_sub(1));
        tokio::time::sleep(wait).await;
    }
}

impl fmt::Display for Retrying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Retrying {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let create_only = matches!(opts.mode, object_store::PutMode::Create);
        let size = payload.content_length() as u64;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .inner
                .put_opts(location, payload.clone(), opts.clone())
                .await
            {
                Ok(r) => return Ok(r),
                Err(object_store::Error::AlreadyExists { path, source })
                    if create_only && attempt > 1 =>
                {
                    let head = self
                        .inner
                        .get_opts(
                            location,
                            GetOptions {
                                head: true,
                                ..Default::default()
                            },
                        )
                        .await;
                    return match head {
                        Ok(found) if found.meta.size == size => Ok(PutResult {
                            e_tag: found.meta.e_tag,
                            version: found.meta.version,
                            extensions: Default::default(),
                        }),
                        _ => Err(object_store::Error::AlreadyExists { path, source }),
                    };
                }
                Err(e) if Self::retriable(&e) && attempt < self.config.attempts => {
                    tracing::warn!(object = %location, attempt, error = %e, "object-store PUT failed, retrying");
                    self.backoff(attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.inner.get_opts(location, options.clone()).await {
                Err(e) if Self::retriable(&e) && attempt < self.config.attempts => {
                    tracing::debug!(object = %location, attempt, error = %e, "object-store GET failed, retrying");
                    self.backoff(attempt).await;
                }
                r => return r,
            }
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Which requests a [`Faulty`] store disturbs, and how.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Fraction (0..=1) of PUTs that fail with a generic error. Half of the
    /// failures happen after the object was written (a lost response).
    pub put_error_rate: f64,
    /// Fraction of GETs that fail.
    pub get_error_rate: f64,
    /// Added to every request.
    pub latency: Duration,
    /// Seed of the fault sequence, so a failing run can be repeated.
    pub seed: u64,
}

impl FaultConfig {
    pub fn is_active(&self) -> bool {
        self.put_error_rate > 0.0 || self.get_error_rate > 0.0 || !self.latency.is_zero()
    }
}

/// Injects errors and latency into the wrapped store. Test configuration
/// only: never enabled by default.
#[derive(Debug)]
pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    config: FaultConfig,
    rng: Mutex<u64>,
}

impl Faulty {
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig) -> Self {
        let seed = config.seed | 1;
        Self {
            inner,
            config,
            rng: Mutex::new(seed),
        }
    }

    /// xorshift64*: deterministic for a seed.
    fn next(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let v = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn delay(&self) {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
    }

    fn injected(op: &str, location: &Path) -> object_store::Error {
        object_store::Error::Generic {
            store: "faulty",
            source: format!("injected {op} failure for {location}").into(),
        }
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.delay().await;
        let roll = self.next();
        if roll < self.config.put_error_rate / 2.0 {
            return Err(Self::injected("put", location));
        }
        let r = self.inner.put_opts(location, payload, opts).await?;
        if roll < self.config.put_error_rate {
            // The write happened but its answer is lost.
            return Err(Self::injected("put (after write)", location));
        }
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.delay().await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.delay().await;
        if self.next() < self.config.get_error_rate {
            return Err(Self::injected("get", location));
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.delay().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.delay().await;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{memory::InMemory, ObjectStoreExt, PutMode};

    #[tokio::test]
    async fn retries_and_settles_lost_create_answers() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        // Every PUT fails half the time, half of those after writing.
        let faulty: Arc<dyn ObjectStore> = Arc::new(Faulty::new(
            inner.clone(),
            FaultConfig {
                put_error_rate: 0.5,
                seed: 7,
                ..Default::default()
            },
        ));
        let counted = Arc::new(Instrumented::new(faulty));
        let counters = counted.counters.clone();
        let store = Retrying::new(
            counted,
            RetryConfig {
                attempts: 8,
                backoff: Duration::from_millis(1),
            },
        );
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        for i in 0..100 {
            let path = Path::from(format!("seg/{i}"));
            let body = PutPayload::from(vec![i as u8; 10 + i]);
            store
                .put_opts(&path, body, create())
                .await
                .unwrap_or_else(|e| panic!("put {i}: {e}"));
            let got = inner.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(got.len(), 10 + i);
        }
        assert!(
            counters.puts.load(Ordering::Relaxed) > 120,
            "failed attempts were retried"
        );
        // A key taken by another object is still an error.
        inner
            .put(&Path::from("taken"), PutPayload::from_static(b"other"))
            .await
            .unwrap();
        let mut refused = 0;
        for _ in 0..20 {
            let r = store
                .put_opts(
                    &Path::from("taken"),
                    PutPayload::from_static(b"mine, longer"),
                    create(),
                )
                .await;
            match r {
                Err(object_store::Error::AlreadyExists { .. }) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
                Ok(_) => panic!("a create-only PUT replaced another object"),
            }
        }
        assert_eq!(refused, 20);
        // Missing keys are not retried.
        let before = counters.gets.load(Ordering::Relaxed);
        assert!(store.get(&Path::from("missing")).await.is_err());
        assert_eq!(counters.gets.load(Ordering::Relaxed), before + 1);
    }

    #[tokio::test]
    async fn counts_and_injects() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty: Arc<dyn ObjectStore> = Arc::new(Faulty::new(
            inner.clone(),
            FaultConfig {
                put_error_rate: 0.5,
                seed: 42,
                ..Default::default()
            },
        ));
        let store = Instrumented::new(faulty);
        let mut failed = 0;
        for i in 0..200 {
            if store
                .put(
                    &Path::from(format!("k{i}")),
                    PutPayload::from_static(b"abc"),
                )
                .await
                .is_err()
            {
                failed += 1;
            }
        }
        assert!((60..140).contains(&failed), "{failed} of 200 failed");
        assert_eq!(store.counters.puts.load(Ordering::Relaxed), 200);
        assert_eq!(store.counters.errors.load(Ordering::Relaxed), failed);
        // Some failed PUTs still wrote their object (lost responses).
        let written = futures::StreamExt::count(inner.list(None)).await as u64;
        assert!(written > 200 - failed, "lost-response writes exist");
        // GETs are counted with their bytes (no GET faults configured, so
        // every read of a written key succeeds).
        let written_key = futures::StreamExt::next(&mut inner.list(None))
            .await
            .expect("some object was written")
            .unwrap()
            .location;
        let got = store.get_range(&written_key, 0..2).await.unwrap();
        assert_eq!(&got[..], b"ab");
        assert_eq!(store.counters.gets.load(Ordering::Relaxed), 1);
        assert_eq!(store.counters.get_bytes.load(Ordering::Relaxed), 2);
    }
}
