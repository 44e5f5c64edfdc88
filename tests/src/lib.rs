//! Harness for end-to-end tests: starts the real `silt` binary on a port
//! chosen at run time, and speaks raw Kafka protocol to it.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes},
    records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType},
};

/// Path of the `silt` binary: `SILT_BIN`, or next to this test executable.
pub fn silt_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SILT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/silt
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|p| p.join("silt"))
        .expect("target directory layout")
}

/// First port chosen for servers; they are picked below the kernel's
/// ephemeral range, because a port released there before the server binds it
/// can meanwhile go to an outgoing connection ("Address already in use").
const LOWEST_PORT: u16 = 10000;

/// Every port this process has handed out: a port is free when chosen but not
/// held, so without this two tests running at once could be handed the same
/// port and the second server to bind it would fail.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A loopback port that is free now, chosen at random below the ephemeral
/// range (see `LOWEST_PORT`) and never handed out before by this process.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let low_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = u64::from(low_ephemeral.saturating_sub(LOWEST_PORT).max(1));
    let seed = RandomState::new();
    for attempt in 0u64..10_000 {
        let port = LOWEST_PORT + (seed.hash_one(attempt) % span) as u16;
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free local port below {low_ephemeral}")
}

/// A `silt dev` process, killed (by PID) when dropped.
pub struct Silt {
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    child: Child,
    log: PathBuf,
}

impl Silt {
    pub fn start(extra: &[&str]) -> Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = data_dir.path().join("silt.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(silt_bin())
            .arg("dev")
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            .arg("--listen")
            .arg(addr.to_string())
            .args(extra)
            .env("SILT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", silt_bin().display()))?;
        let mut silt = Self {
            addr,
            data_dir,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(addr).is_ok() {
                return Ok(silt);
            }
            if let Some(status) = silt.child.try_wait()? {
                bail!("silt exited with {status}: {}", silt.log_tail());
            }
            if Instant::now() > deadline {
                bail!("silt did not listen within 30 s: {}", silt.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = text.lines().rev().take(30).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn client(&self) -> Result<Client> {
        Client::connect(self.addr)
    }
}

impl Drop for Silt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking raw Kafka protocol client.
pub struct Client {
    pub stream: TcpStream,
    correlation: i32,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            stream,
            correlation: 0,
        })
    }

    /// Sends a typed request at `version` and decodes the response.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("silt-tests")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        req.encode(&mut body, version)?;
        self.send_raw(&body)?;
        let mut resp = self
            .recv_frame()?
            .context("connection closed before the response")?;
        let header_version = if R::KEY == ApiKey::ApiVersions as i16 {
            0
        } else {
            <R::Response as HeaderVersion>::header_version(version)
        };
        let rh = ResponseHeader::decode(&mut resp, header_version)?;
        if rh.correlation_id != self.correlation {
            bail!(
                "correlation id {} != {}",
                rh.correlation_id,
                self.correlation
            );
        }
        R::Response::decode(&mut resp, version)
    }

    /// Writes a length-prefixed frame.
    pub fn send_raw(&mut self, body: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(body);
        self.stream.write_all(&frame)?;
        Ok(())
    }

    /// Reads one frame; `None` if the server closed the connection.
    pub fn recv_frame(&mut self) -> Result<Option<Bytes>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
        let n = i32::from_be_bytes(len);
        let mut buf = vec![0u8; n as usize];
        self.stream.read_exact(&mut buf)?;
        Ok(Some(Bytes::from(buf)))
    }

    /// True once the server has closed this connection (EOF or reset).
    /// Whether the server closed the connection: end of stream or a reset.
    /// A read that times out (the server kept the connection open without
    /// answering) is not a close.
    pub fn closed_by_server(&mut self) -> bool {
        use std::io::ErrorKind;
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ),
        }
    }
}

/// Encodes records `values` as one uncompressed RecordBatch.
pub fn record_batch(values: &[&[u8]]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding a record batch");
    buf.freeze()
}

/// Base offsets of the batches in a fetched record set.
pub fn batch_offsets(mut records: Bytes) -> Vec<i64> {
    let mut out = Vec::new();
    while records.len() >= 12 {
        let base = (&records[0..8]).get_i64();
        let len = (&records[8..12]).get_i32() as usize;
        out.push(base);
        records.advance((12 + len).min(records.len()));
    }
    out
}

/// A one-member etcd (Debian's `etcd-server`) on ports chosen at run time,
/// killed by PID when dropped.
pub struct Etcd {
    pub endpoint: String,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Etcd {
    /// Starts etcd; ports chosen at run time can be taken by someone else
    /// before etcd binds them, so a failed start is retried on new ports.
    pub fn start() -> Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once() {
                Ok(etcd) => return Ok(etcd),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn start_once() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let client = free_port();
        let peer = std::iter::repeat_with(free_port)
            .find(|p| *p != client)
            .expect("a second port");
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_path = dir.path().join("etcd.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("etcd")
            .args(["--name", "s1", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("s1={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian package etcd-server; scripts/install-test-deps.sh installs it)")?;
        let mut etcd = Self {
            endpoint,
            _dir: dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", client)).is_err() {
            if let Some(status) = etcd.child.try_wait()? {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                bail!("etcd exited with {status}: {}", tail.join(" | "));
            }
            if Instant::now() > deadline {
                bail!("etcd did not listen within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Listening is not serving: etcd accepts connections before it has
        // elected itself and may reset them meanwhile. Ready means its
        // health endpoint says so.
        while !healthy(client) {
            if let Some(status) = etcd.child.try_wait()? {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                bail!("etcd exited with {status}: {}", tail.join(" | "));
            }
            if Instant::now() > deadline {
                bail!("etcd did not become healthy within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(etcd)
    }
}

/// Whether the etcd serving clients on `port` answers its health check
/// with `"health":"true"`.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    if conn
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
