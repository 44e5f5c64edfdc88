//! Block cache in front of object storage.
//!
//! Objects are read in fixed-size blocks keyed by `(object path, block
//! index)`. A miss is one ranged GET of that block; concurrent misses for the
//! same block are coalesced into one GET by the cache.

use std::{ops::Range, path::Path, sync::Arc};

use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use foyer::{
    BlockEngineConfig, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCacheProperties, Location, Source,
};
use futures::future::BoxFuture;
use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt};

/// Default size of one cached block.
pub const DEFAULT_BLOCK_SIZE: u64 = 1 << 20;
/// Default read-ahead: the most one GET fetches beyond the block asked for.
pub const DEFAULT_READAHEAD: u64 = 16 << 20;
/// Default bound on bytes fetched ahead and not read yet.
pub const DEFAULT_AHEAD_BYTES: u64 = 128 << 20;

/// Why a ranged read of an object failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The block could not be fetched (object store or cache failure); a
    /// later read may succeed.
    #[error("object {path}: {source}")]
    Unavailable {
        path: String,
        #[source]
        source: CacheError,
    },
    /// The object is shorter than the index says: damaged metadata or a
    /// damaged object.
    #[error("object {path}: block {block} has {got} bytes, expected {expected}")]
    ShortBlock {
        path: String,
        block: u64,
        got: usize,
        expected: u64,
    },
    #[error("object {path}: range {start}..{end} outside object of {size} bytes")]
    Range {
        path: String,
        start: u64,
        end: u64,
        size: u64,
    },
}

/// A block cache could not produce a block: its fetch from object storage
/// failed, or the cache itself did.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CacheError(pub String);

pub type Fetch = BoxFuture<'static, Result<Bytes, object_store::Error>>;

/// A cache of object blocks. `get_or_fetch` runs `fetch` on a miss.
#[async_trait::async_trait]
pub trait BlockCache: Send + Sync + 'static {
    async fn get_or_fetch(&self, key: String, fetch: Fetch) -> Result<Bytes, CacheError>;
    /// Offers a block that is already in memory (write-through after upload).
    fn insert(&self, key: String, block: Bytes);
    /// Offers a block fetched ahead of its reader: kept like a fetched
    /// block (memory, then the disk tier), so that many readers reading
    /// ahead at once spill to local disk instead of fetching again.
    fn insert_fetched(&self, key: String, block: Bytes) {
        self.insert(key, block);
    }
    /// Whether the block is cached (a false answer costs a GET at most).
    fn contains(&self, key: &str) -> bool;
    /// Whether blocks inserted are kept (read-ahead is pointless if not).
    fn keeps_blocks(&self) -> bool {
        true
    }
    /// What the cache did, for metrics.
    fn stats(&self) -> CacheStats;
    async fn close(&self);
}

/// What a block cache did since the process started, and its size.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    /// Blocks fetched from object storage.
    pub misses: u64,
    /// Blocks that left the memory tier to make room (to the disk tier, or
    /// out of the cache).
    pub memory_evictions: u64,
    pub memory_evicted_bytes: u64,
    pub memory_bytes: u64,
    pub memory_capacity: u64,
    pub disk_capacity: u64,
}

/// Counters behind [`CacheStats`].
#[derive(Debug, Default)]
struct Counts {
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    evicted_bytes: AtomicU64,
}

impl EventListener for Counts {
    type Key = String;
    type Value = Bytes;
    fn on_leave(&self, reason: Event, key: &String, value: &Bytes) {
        if reason == Event::Evict {
            self.evictions.fetch_add(1, Relaxed);
            self.evicted_bytes
                .fetch_add((key.len() + value.len()) as u64, Relaxed);
        }
    }
}

/// No caching: every read goes to object storage.
#[derive(Default)]
pub struct NoCache {
    misses: AtomicU64,
}

#[async_trait::async_trait]
impl BlockCache for NoCache {
    async fn get_or_fetch(&self, _key: String, fetch: Fetch) -> Result<Bytes, CacheError> {
        self.misses.fetch_add(1, Relaxed);
        fetch.await.map_err(|e| CacheError(e.to_string()))
    }
    fn stats(&self) -> CacheStats {
        CacheStats {
            misses: self.misses.load(Relaxed),
            ..Default::default()
        }
    }
    fn insert(&self, _key: String, _block: Bytes) {}
    fn contains(&self, _key: &str) -> bool {
        false
    }
    fn keeps_blocks(&self) -> bool {
        false
    }
    async fn close(&self) {}
}

/// foyer hybrid cache: memory in front of a local disk directory.
pub struct FoyerCache {
    inner: HybridCache<String, Bytes>,
    counts: Arc<Counts>,
    memory_capacity: u64,
    disk_capacity: u64,
}

impl FoyerCache {
    pub async fn open(
        dir: &Path,
        memory_bytes: usize,
        disk_bytes: usize,
    ) -> Result<Self, CacheError> {
        let err =
            |e: &dyn std::fmt::Display| CacheError(format!("cache dir {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        let device = FsDeviceBuilder::new(dir)
            .with_capacity(disk_bytes)
            .build()
            .map_err(|e| err(&e))?;
        let counts = Arc::new(Counts::default());
        let inner = HybridCacheBuilder::new()
            .with_name("silt-blocks")
            .with_event_listener(counts.clone())
            .memory(memory_bytes)
            .with_weighter(|k: &String, v: &Bytes| k.len() + v.len())
            .storage()
            .with_engine_config(BlockEngineConfig::new(device))
            .build()
            .await
            .map_err(|e| err(&e))?;
        Ok(Self {
            inner,
            counts,
            memory_capacity: memory_bytes as u64,
            disk_capacity: disk_bytes as u64,
        })
    }
}

#[async_trait::async_trait]
impl BlockCache for FoyerCache {
    async fn get_or_fetch(&self, key: String, fetch: Fetch) -> Result<Bytes, CacheError> {
        // A miss is counted when its fetch runs: readers of the same block
        // at once share one fetch (and count neither a hit nor a miss).
        let counts = self.counts.clone();
        let fetch = async move {
            counts.misses.fetch_add(1, Relaxed);
            fetch.await
        };
        let entry = self
            .inner
            .get_or_fetch(&key, move || fetch)
            .await
            .map_err(|e| CacheError(e.to_string()))?;
        match entry.source() {
            Source::Memory => self.counts.memory_hits.fetch_add(1, Relaxed),
            Source::Disk => self.counts.disk_hits.fetch_add(1, Relaxed),
            Source::Outer => 0,
        };
        Ok(entry.value().clone())
    }
    fn stats(&self) -> CacheStats {
        let c = &self.counts;
        CacheStats {
            memory_hits: c.memory_hits.load(Relaxed),
            disk_hits: c.disk_hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            memory_evictions: c.evictions.load(Relaxed),
            memory_evicted_bytes: c.evicted_bytes.load(Relaxed),
            memory_bytes: self.inner.memory().usage() as u64,
            memory_capacity: self.memory_capacity,
            disk_capacity: self.disk_capacity,
        }
    }
    fn insert(&self, key: String, block: Bytes) {
        // Freshly written blocks serve consumers tailing the log; they stay
        // in memory only. Writing every produced byte to the local disk as
        // well cost a third of the agent's CPU at full produce rate; blocks
        // read back from object storage do reach the disk tier.
        let props = HybridCacheProperties::default().with_location(Location::InMem);
        self.inner.insert_with_properties(key, block, props);
    }
    fn insert_fetched(&self, key: String, block: Bytes) {
        self.inner.insert(key, block);
    }
    fn contains(&self, key: &str) -> bool {
        self.inner.contains(key)
    }
    async fn close(&self) {
        if let Err(e) = self.inner.close().await {
            tracing::warn!(error = %e, "closing block cache");
        }
    }
}

/// Read-ahead windows fetched in the background at once, at most (each
/// holds up to the read-ahead in memory until its blocks are cached).
pub const MAX_PREFETCHES: usize = 8;
/// Read-ahead bytes in flight at once, in read-ahead windows (background
/// and foreground together); a miss beyond it fetches its block alone.
pub const READAHEAD_INFLIGHT_WINDOWS: usize = 16;
/// How many windows ahead of a sequential reader are kept cached or
/// coming (each one GET, in flight together).
pub const READAHEAD_DEPTH: u64 = 2;

/// How long a block fetched ahead counts against the read-ahead budget if
/// no one reads it (it was evicted, or its reader went away).
const AHEAD_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Blocks fetched ahead of their readers and not read yet: their bytes are
/// bounded, so that many sequential readers at once cannot fetch more ahead
/// than the cache keeps (which would evict and fetch the same blocks again).
#[derive(Default)]
struct AheadLedger {
    blocks: std::collections::BTreeMap<String, u64>,
    order: std::collections::VecDeque<(tokio::time::Instant, String)>,
    bytes: u64,
}

impl AheadLedger {
    fn prune(&mut self) {
        let now = tokio::time::Instant::now();
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < AHEAD_TTL {
                break;
            }
            let (_, key) = self.order.pop_front().expect("checked");
            if let Some(len) = self.blocks.remove(&key) {
                self.bytes -= len;
            }
        }
    }

    fn add(&mut self, key: String, len: u64) {
        self.prune();
        if self.blocks.insert(key.clone(), len).is_none() {
            self.bytes += len;
            self.order.push_back((tokio::time::Instant::now(), key));
        }
    }

    fn read(&mut self, key: &str) {
        if let Some(len) = self.blocks.remove(key) {
            self.bytes -= len;
        }
    }
}

/// Reads byte ranges of immutable objects through a [`BlockCache`].
#[derive(Clone)]
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    cache: Arc<dyn BlockCache>,
    block_size: u64,
    readahead: u64,
    /// Windows being fetched ahead of sequential readers: (object, first
    /// block, end block).
    prefetching: Arc<std::sync::Mutex<std::collections::BTreeSet<(String, u64, u64)>>>,
    /// Blocks fetched beyond the one asked for, in flight (permits).
    ahead_budget: Arc<tokio::sync::Semaphore>,
    /// Blocks fetched ahead and not read yet, at most `ahead_bytes`.
    ahead: Arc<std::sync::Mutex<AheadLedger>>,
    ahead_bytes: u64,
}

impl ObjectReader {
    pub fn new(store: Arc<dyn ObjectStore>, cache: Arc<dyn BlockCache>, block_size: u64) -> Self {
        Self {
            store,
            cache,
            block_size: block_size.max(4096),
            readahead: DEFAULT_READAHEAD,
            prefetching: Arc::default(),
            ahead_budget: Arc::new(tokio::sync::Semaphore::new(0)),
            ahead: Arc::default(),
            ahead_bytes: DEFAULT_AHEAD_BYTES,
        }
        .budgeted()
    }

    /// Bytes one GET may fetch past the block a read misses on, when the
    /// caller says they will be wanted (each such GET holds that much
    /// memory until its blocks are cached).
    pub fn with_readahead(mut self, bytes: u64) -> Self {
        self.readahead = bytes;
        self.budgeted()
    }

    /// Bytes fetched ahead and not read yet, at most (about half the
    /// memory cache, so that what is fetched ahead is still there when
    /// its reader comes).
    pub fn with_ahead_bytes(mut self, bytes: u64) -> Self {
        self.ahead_bytes = bytes;
        self
    }

    /// Room for `bytes` more fetched ahead.
    fn ahead_room(&self, bytes: u64) -> bool {
        let mut ledger = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        ledger.prune();
        ledger.bytes + bytes <= self.ahead_bytes
    }

    fn budgeted(mut self) -> Self {
        let blocks = (self.window() / self.block_size) as usize * READAHEAD_INFLIGHT_WINDOWS;
        self.ahead_budget = Arc::new(tokio::sync::Semaphore::new(blocks));
        self
    }

    /// The block's cache key. It names the block size, so a cache kept
    /// across a change of `cache_block` never serves a block of the old
    /// size as one of the new.
    fn key(&self, path: &str, block: u64) -> String {
        format!("{path}#{}#{block}", self.block_size)
    }

    /// What the block cache did, for metrics.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Puts a freshly written object's blocks into the cache.
    pub fn warm(&self, path: &str, object: &Bytes) {
        let size = object.len() as u64;
        let mut block = 0;
        while block * self.block_size < size {
            let start = block * self.block_size;
            let end = (start + self.block_size).min(size);
            self.cache.insert(
                self.key(path, block),
                object.slice(start as usize..end as usize),
            );
            block += 1;
        }
    }

    /// Reads `range` of the object at `path`, whose total size is `size`.
    pub async fn read(&self, path: &str, size: u64, range: Range<u64>) -> Result<Bytes, ReadError> {
        let end = range.end;
        self.read_ahead(path, size, range, end).await
    }

    /// Reads `range`; a block missing from the cache is fetched with the
    /// blocks after it up to `ahead_to` (a sequential reader's next bytes),
    /// at most the read-ahead, in one GET, and those blocks are cached.
    /// While the reader consumes one window, the next one up to `ahead_to`
    /// is fetched in the background, so a sequential read keeps one GET of
    /// the read-ahead in flight.
    pub async fn read_ahead(
        &self,
        path: &str,
        size: u64,
        range: Range<u64>,
        ahead_to: u64,
    ) -> Result<Bytes, ReadError> {
        if range.start > range.end || range.end > size {
            return Err(ReadError::Range {
                path: path.to_string(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let ahead_to = ahead_to.clamp(range.end, size);
        let first = range.start / self.block_size;
        let last = (range.end - 1) / self.block_size;
        let mut blocks = Vec::with_capacity((last - first + 1) as usize);
        let mut b = first;
        while b <= last {
            let (block, after) = self.block(path, size, b, range.end, ahead_to).await?;
            self.consumed(path, b);
            blocks.push(block);
            b += 1;
            for block in after {
                if b > last {
                    break;
                }
                blocks.push(block);
                self.consumed(path, b);
                b += 1;
            }
        }
        self.prefetch(path, size, last, ahead_to);
        if blocks.len() == 1 {
            let off = first * self.block_size;
            return Ok(blocks[0].slice((range.start - off) as usize..(range.end - off) as usize));
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for (i, block) in blocks.iter().enumerate() {
            let block_start = (first + i as u64) * self.block_size;
            let s = range.start.max(block_start) - block_start;
            let e = range.end.min(block_start + block.len() as u64) - block_start;
            out.extend_from_slice(&block[s as usize..e as usize]);
        }
        Ok(out.freeze())
    }

    fn consumed(&self, path: &str, block: u64) {
        self.ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .read(&self.key(path, block));
    }

    /// The read-ahead in whole blocks (at least one).
    fn window(&self) -> u64 {
        (self.readahead / self.block_size).max(1) * self.block_size
    }

    /// Keeps the `READAHEAD_DEPTH` windows after block `at` (the last one
    /// read) coming: the first block of them that is neither cached nor
    /// being fetched starts a background fetch of a window from there.
    fn prefetch(&self, path: &str, size: u64, at: u64, ahead_to: u64) {
        let bs = self.block_size;
        let window = self.window() / bs;
        let run_blocks = ahead_to.div_ceil(bs);
        let wanted = (at + READAHEAD_DEPTH * window).min(run_blocks.saturating_sub(1));
        if self.readahead <= bs
            || wanted <= at
            || !self.cache.keeps_blocks()
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        let Some(p) = (at + 1..=wanted).find(|b| !self.cache.contains(&self.key(path, *b))) else {
            return;
        };
        let end = (p + window).min(run_blocks);
        if !self.ahead_room((end - p) * bs) {
            return;
        }
        {
            let mut inflight = self.prefetching.lock().unwrap_or_else(|e| e.into_inner());
            let busy = inflight
                .iter()
                .any(|(o, s, e)| o == path && (*s..*e).contains(&p));
            if busy || inflight.len() >= MAX_PREFETCHES {
                return;
            }
            inflight.insert((path.to_string(), p, end));
        }
        let me = self.clone();
        let path = path.to_string();
        tokio::spawn(async move {
            if let Err(e) = me.block(&path, size, p, p * me.block_size, ahead_to).await {
                tracing::debug!(object = %path, block = p, error = %e, "read-ahead failed");
            }
            me.prefetching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(path, p, end));
        });
    }

    /// Block `block` of the object; on a miss, also the blocks after it up
    /// to `ahead_to` that the same GET fetched (already cached).
    /// Blocks up to `need_to` are wanted now; those after it, up to
    /// `ahead_to`, are fetched ahead if the read-ahead budgets allow.
    async fn block(
        &self,
        path: &str,
        size: u64,
        block: u64,
        need_to: u64,
        ahead_to: u64,
    ) -> Result<(Bytes, Vec<Bytes>), ReadError> {
        let bs = self.block_size;
        let start = block * bs;
        let end = (start + bs).min(size);
        // Up to the read-ahead; to the end of the run if only a quarter
        // window more, rather than a GET of the tail on its own.
        let limit = start + self.window();
        let mut span_end = if ahead_to <= limit + (self.window() / 4).max(bs) {
            ahead_to
        } else {
            limit
        }
        .div_ceil(bs)
        .saturating_mul(bs)
        .clamp(end, size);
        // Blocks beyond those wanted now need room in the read-ahead
        // budgets (fetched ahead and not read; in flight); without it the
        // GET stops at what is wanted.
        let wanted_end = need_to.div_ceil(bs).saturating_mul(bs).clamp(end, span_end);
        if span_end > wanted_end && !self.ahead_room(span_end - wanted_end) {
            span_end = wanted_end;
        }
        let extra = ((span_end - end).div_ceil(bs)) as u32;
        let _permit = match self.ahead_budget.clone().try_acquire_many_owned(extra) {
            Ok(p) => Some(p),
            Err(_) => {
                span_end = end;
                None
            }
        };
        let wanted_end = wanted_end.min(span_end);
        let store = self.store.clone();
        let location = ObjectPath::from(path);
        let span: Arc<std::sync::Mutex<Option<Bytes>>> = Arc::default();
        let fetch: Fetch = {
            let span = span.clone();
            Box::pin(async move {
                let all = store.get_range(&location, start..span_end).await?;
                // Each cached block owns its bytes: a slice would keep the
                // whole span alive behind a block's weight.
                let first = if all.len() as u64 > bs {
                    Bytes::copy_from_slice(&all[..bs as usize])
                } else {
                    all.clone()
                };
                *span.lock().unwrap_or_else(|p| p.into_inner()) = Some(all);
                Ok(first)
            })
        };
        let short = |got: usize, expected: u64| ReadError::ShortBlock {
            path: path.to_string(),
            block,
            got,
            expected,
        };
        let bytes = self
            .cache
            .get_or_fetch(self.key(path, block), fetch)
            .await
            .map_err(|source| ReadError::Unavailable {
                path: path.to_string(),
                source,
            })?;
        if bytes.len() as u64 != end - start {
            return Err(short(bytes.len(), end - start));
        }
        let all = span.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut after = Vec::new();
        if let Some(all) = all {
            if all.len() as u64 != span_end - start {
                return Err(short(all.len(), span_end - start));
            }
            let mut at = bs;
            let mut b = block + 1;
            while at < all.len() as u64 {
                let e = (at + bs).min(all.len() as u64);
                let piece = Bytes::copy_from_slice(&all[at as usize..e as usize]);
                if start + at >= wanted_end {
                    self.ahead
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .add(self.key(path, b), piece.len() as u64);
                }
                self.cache.insert_fetched(self.key(path, b), piece.clone());
                after.push(piece);
                at = e;
                b += 1;
            }
        }
        Ok((bytes, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{memory::InMemory, PutPayload};

    #[tokio::test]
    async fn reads_across_blocks_through_foyer() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        store
            .put(&ObjectPath::from("o"), PutPayload::from(data.clone()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(
            FoyerCache::open(dir.path(), 1 << 20, 16 << 20)
                .await
                .unwrap(),
        );
        let reader = ObjectReader::new(store.clone(), cache.clone(), 4096);
        for (s, e) in [
            (0, 1),
            (100, 9000),
            (4095, 4097),
            (19_000, 20_000),
            (0, 20_000),
        ] {
            let got = reader.read("o", 20_000, s..e).await.unwrap();
            assert_eq!(&got[..], &data[s as usize..e as usize]);
        }
        // Served from the cache once the object is gone from the store.
        store.delete(&ObjectPath::from("o")).await.unwrap();
        let got = reader.read("o", 20_000, 10..5000).await.unwrap();
        assert_eq!(&got[..], &data[10..5000]);
        assert!(reader.read("o", 20_000, 10..30_000).await.is_err());
        // Another block size over the same cache never sees the old blocks
        // (the object is gone, so a read must miss and fail).
        let other = ObjectReader::new(store.clone(), cache.clone(), 8192);
        assert!(other.read("o", 20_000, 10..5000).await.is_err());
        cache.close().await;
    }

    /// Objects "o" and "p" of 100,000 bytes each, behind a counting store.
    async fn two_objects() -> (Vec<u8>, Arc<crate::store::Instrumented>) {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        for o in ["o", "p"] {
            inner
                .put(&ObjectPath::from(o), PutPayload::from(data.clone()))
                .await
                .unwrap();
        }
        (data, Arc::new(crate::store::Instrumented::new(inner)))
    }

    /// A sequential read along a run: one GET per read-ahead window, the
    /// next window fetched in the background while the current one is
    /// read; a run's short tail comes with the window before it.
    #[tokio::test]
    async fn reads_ahead_in_one_get_per_window() {
        let (data, store) = two_objects().await;
        let counters = store.counters.clone();
        let gets = || counters.gets.load(std::sync::atomic::Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(
            FoyerCache::open(dir.path(), 1 << 20, 16 << 20)
                .await
                .unwrap(),
        );
        // Nine 4 KiB blocks per window.
        let reader = ObjectReader::new(store.clone(), cache.clone(), 4096).with_readahead(9 * 4096);
        let settle = || tokio::time::sleep(std::time::Duration::from_millis(50));
        // Two blocks asked, the run goes on to 90,000: the first window,
        // and the second (from where the first ends) in the background.
        let got = reader
            .read_ahead("o", 100_000, 100..5000, 90_000)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[100..5000]);
        settle().await;
        assert_eq!(gets(), 2);
        assert!(
            cache.contains(&reader.key("o", 9)),
            "second window fetched ahead"
        );
        let mut at = 5000;
        while at < 90_000 {
            let end = (at + 3000).min(90_000);
            let got = reader
                .read_ahead("o", 100_000, at..end, 90_000)
                .await
                .unwrap();
            assert_eq!(&got[..], &data[at as usize..end as usize]);
            at = end;
            settle().await;
        }
        // Windows [0, 9), [9, 18), [18, 22) blocks.
        assert_eq!(gets(), 3);
        // A plain read of several uncached blocks is one GET too.
        let got = reader.read("o", 100_000, 90_000..100_000).await.unwrap();
        assert_eq!(&got[..], &data[90_000..100_000]);
        assert_eq!(gets(), 4);
        // A run one block longer than the window: one GET, no tail GET.
        let got = reader
            .read_ahead("p", 100_000, 0..100, 40_000)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[..100]);
        let got = reader
            .read_ahead("p", 100_000, 100..40_000, 40_000)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[100..40_000]);
        settle().await;
        assert_eq!(gets(), 5);
        cache.close().await;
    }

    /// Bytes fetched ahead and not read yet are bounded: a second reader
    /// finds no room and fetches only what it asks for, until the first
    /// reader reads what was fetched for it.
    #[tokio::test]
    async fn read_ahead_is_bounded_by_what_is_not_read_yet() {
        let (data, store) = two_objects().await;
        let counters = store.counters.clone();
        let get_bytes = || {
            counters
                .get_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(
            FoyerCache::open(dir.path(), 1 << 20, 16 << 20)
                .await
                .unwrap(),
        );
        let reader = ObjectReader::new(store.clone(), cache.clone(), 4096)
            .with_readahead(8 * 4096)
            .with_ahead_bytes(8 * 4096);
        // "o" (a run of eight blocks): one block wanted, seven fetched
        // ahead (the budget's worth).
        reader
            .read_ahead("o", 100_000, 0..100, 8 * 4096)
            .await
            .unwrap();
        assert_eq!(get_bytes(), 8 * 4096);
        // "p": no room; only its block.
        reader
            .read_ahead("p", 100_000, 0..100, 90_000)
            .await
            .unwrap();
        assert_eq!(get_bytes(), 9 * 4096);
        // "o" reads what was fetched for it: room again for "p".
        reader
            .read_ahead("o", 100_000, 100..8 * 4096, 8 * 4096)
            .await
            .unwrap();
        assert_eq!(get_bytes(), 9 * 4096);
        let before = get_bytes();
        let got = reader
            .read_ahead("p", 100_000, 4096..4196, 90_000)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[4096..4196]);
        assert!(get_bytes() - before > 4096, "read ahead again");
        cache.close().await;
    }
}
