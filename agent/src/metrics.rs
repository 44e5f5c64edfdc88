//! The agent's metrics: live counters and histograms updated where things
//! happen (one set per process), and values read from the agent's state at
//! scrape time. `/metrics` writes them all through `prometheus-client` in
//! the OpenMetrics text format.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        LazyLock, RwLock,
    },
};

use kafka_protocol::messages::{ApiKey, ResponseKind};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use silt_tiering::metrics::{self as m, Histograms};

type Label = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type TopicLabel = [(&'static str, String); 1];

/// The topic label of topics past `metrics_topic_labels`, and of every
/// topic when that is 0.
pub const OTHER_TOPICS: &str = "_other";

/// The process's live metrics.
pub struct Metrics {
    /// Kafka requests by API, from decoded to answered (Fetch includes its
    /// long-poll wait, Produce its commit, as Kafka's `TotalTimeMs`).
    pub requests: Histograms<Label>,
    /// Error codes in responses, by API and Kafka error name (a response
    /// with several failed partitions counts each).
    pub errors: Family<Labels2, Counter>,
    pub produced_bytes: Family<TopicLabel, Counter>,
    pub produced_records: Family<TopicLabel, Counter>,
    pub fetched_bytes: Family<TopicLabel, Counter>,
    /// Sealed segment sizes by what sealed them (`time`, `bytes`, `full`,
    /// `registration`, `shutdown`).
    pub seal_bytes: Histograms<Label>,
    pub upload_seconds: Histogram,
    pub upload_failures: Counter,
    /// From a segment's commit proposal to its record applied here.
    pub commit_seconds: Histogram,
    pub connections_open: Gauge,
    pub connections_accepted: Counter,
    /// Connections refused or closed by the agent (not by the client), by
    /// reason (`max_connections`, `protocol`, `idle`, `authentication`).
    pub connections_closed: Family<Label, Counter>,
    pub long_poll_waiters: Gauge,
    pub rebalances: Counter,
    /// Topics with a label of their own, at most `topic_cap`.
    labelled: RwLock<HashSet<String>>,
    topic_cap: AtomicUsize,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        Self {
            requests: m::latency_family(),
            errors: Family::default(),
            produced_bytes: Family::default(),
            produced_records: Family::default(),
            fetched_bytes: Family::default(),
            seal_bytes: m::size_family(),
            upload_seconds: m::latency_buckets(),
            upload_failures: Counter::default(),
            commit_seconds: m::latency_buckets(),
            connections_open: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_closed: Family::default(),
            long_poll_waiters: Gauge::default(),
            rebalances: Counter::default(),
            labelled: RwLock::default(),
            topic_cap: AtomicUsize::new(1000),
        }
    }

    /// Sets how many topics get a label of their own (`metrics_topic_labels`).
    pub fn set_topic_labels(&self, n: usize) {
        self.topic_cap.store(n, Relaxed);
    }

    /// The label a topic's series carry: its name while fewer than the cap
    /// of topics have one, else [`OTHER_TOPICS`].
    pub fn topic_label(&self, topic: &str) -> TopicLabel {
        let known = self
            .labelled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic);
        if known {
            return [("topic", topic.to_string())];
        }
        let mut set = self.labelled.write().unwrap_or_else(|p| p.into_inner());
        if set.len() < self.topic_cap.load(Relaxed) {
            set.insert(topic.to_string());
            return [("topic", topic.to_string())];
        }
        [("topic", OTHER_TOPICS.to_string())]
    }

    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        let label = self.topic_label(topic);
        self.produced_bytes.get_or_create(&label).inc_by(bytes);
        self.produced_records.get_or_create(&label).inc_by(records);
    }

    pub fn fetched(&self, topic: &str, bytes: u64) {
        if bytes > 0 {
            let label = self.topic_label(topic);
            self.fetched_bytes.get_or_create(&label).inc_by(bytes);
        }
    }

    /// Records one answered request: its latency and the error codes in
    /// its response.
    pub fn request(&self, key: ApiKey, seconds: f64, response: Option<&ResponseKind>) {
        let api = api_name(key);
        self.requests
            .get_or_create(&[("api", api)])
            .observe(seconds);
        if let Some(r) = response {
            error_codes(r, &mut |code| {
                if code != 0 {
                    self.errors
                        .get_or_create(&[("api", api), ("error", error_name(code))])
                        .inc();
                }
            });
        }
    }

    pub fn closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Registers the live metrics in `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "silt_kafka_request_duration_seconds",
            "Kafka requests from decoded to answered, by API",
            self.requests.clone(),
        );
        r.register(
            "silt_kafka_request_errors",
            "error codes in Kafka responses, by API and error",
            self.errors.clone(),
        );
        r.register(
            "silt_produce_bytes",
            "record batch bytes appended, by topic",
            self.produced_bytes.clone(),
        );
        r.register(
            "silt_produce_records",
            "records appended, by topic",
            self.produced_records.clone(),
        );
        r.register(
            "silt_fetch_bytes",
            "record batch bytes returned by Fetch, by topic",
            self.fetched_bytes.clone(),
        );
        r.register(
            "silt_segment_seal_bytes",
            "sealed segment sizes, by what sealed them",
            self.seal_bytes.clone(),
        );
        r.register(
            "silt_segment_upload_duration_seconds",
            "segment uploads (one create-only PUT each)",
            self.upload_seconds.clone(),
        );
        r.register(
            "silt_segment_upload_failures",
            "segment uploads that failed (their producers get a retriable error)",
            self.upload_failures.clone(),
        );
        r.register(
            "silt_segment_commit_duration_seconds",
            "segment commits, from proposal to applied",
            self.commit_seconds.clone(),
        );
        r.register(
            "silt_connections_open",
            "Kafka connections open",
            self.connections_open.clone(),
        );
        r.register(
            "silt_connections_accepted",
            "Kafka connections accepted",
            self.connections_accepted.clone(),
        );
        r.register(
            "silt_connections_closed_by_agent",
            "Kafka connections refused or closed by the agent, by reason",
            self.connections_closed.clone(),
        );
        r.register(
            "silt_fetch_long_poll_waiters",
            "Fetch requests waiting for data",
            self.long_poll_waiters.clone(),
        );
        r.register(
            "silt_group_rebalances",
            "rebalances of groups this agent coordinated",
            self.rebalances.clone(),
        );
    }
}

/// Holds one in a gauge while alive.
pub struct Held<'a>(&'a Gauge);

impl<'a> Held<'a> {
    pub fn new(g: &'a Gauge) -> Self {
        g.inc();
        Self(g)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An API's name as Kafka's request metrics spell it (`Produce`, `Fetch`).
fn api_name(key: ApiKey) -> &'static str {
    static NAMES: LazyLock<HashMap<i16, &'static str>> = LazyLock::new(|| {
        ApiKey::iter()
            .map(|k| (k as i16, &*Box::leak(format!("{k:?}").into_boxed_str())))
            .collect()
    });
    NAMES.get(&(key as i16)).copied().unwrap_or("Unknown")
}

/// A Kafka error code's name as Kafka spells it (`NOT_LEADER_OR_FOLLOWER`);
/// codes Kafka does not define are `UNKNOWN`.
pub fn error_name(code: i16) -> &'static str {
    static NAMES: LazyLock<HashMap<i16, &'static str>> = LazyLock::new(|| {
        (-1..=200)
            .filter_map(|code| {
                let e = kafka_protocol::ResponseError::try_from_code(code)?;
                if matches!(e, kafka_protocol::ResponseError::Unknown(_)) {
                    return None;
                }
                let mut name = String::new();
                for (i, ch) in e.to_string().chars().enumerate() {
                    if ch.is_ascii_uppercase() && i > 0 {
                        name.push('_');
                    }
                    name.push(ch.to_ascii_uppercase());
                }
                Some((code, &*Box::leak(name.into_boxed_str())))
            })
            .collect()
    });
    NAMES.get(&code).copied().unwrap_or("UNKNOWN")
}

/// Calls `f` with every error code of a response: its own, and its topics'
/// and partitions' where the API has them.
fn error_codes(r: &ResponseKind, f: &mut impl FnMut(i16)) {
    match r {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Fetch(r) => {
            f(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Metadata(r) => {
            f(r.error_code);
            r.topics.iter().for_each(|t| f(t.error_code));
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            f(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
            for g in &r.groups {
                f(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| f(p.error_code));
            }
        }
        ResponseKind::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        ResponseKind::JoinGroup(r) => f(r.error_code),
        ResponseKind::SyncGroup(r) => f(r.error_code),
        ResponseKind::Heartbeat(r) => f(r.error_code),
        ResponseKind::LeaveGroup(r) => f(r.error_code),
        ResponseKind::ConsumerGroupHeartbeat(r) => f(r.error_code),
        ResponseKind::InitProducerId(r) => f(r.error_code),
        ResponseKind::AddOffsetsToTxn(r) => f(r.error_code),
        ResponseKind::EndTxn(r) => f(r.error_code),
        ResponseKind::SaslAuthenticate(r) => f(r.error_code),
        ResponseKind::SaslHandshake(r) => f(r.error_code),
        ResponseKind::DescribeCluster(r) => f(r.error_code),
        ResponseKind::ListGroups(r) => f(r.error_code),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        _ => {}
    }
}

/// Renders the metrics page: the live metrics, what `more` registers
/// (values read from the agent's state at this scrape), then `# EOF`.
pub fn render(more: impl FnOnce(&mut Registry)) -> String {
    let mut r = Registry::default();
    global().register(&mut r);
    more(&mut r);
    let mut out = String::with_capacity(64 << 10);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ProduceResponse,
    };

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(30000), "UNKNOWN");
        assert_eq!(api_name(ApiKey::Produce), "Produce");
        assert_eq!(
            api_name(ApiKey::ConsumerGroupHeartbeat),
            "ConsumerGroupHeartbeat"
        );
    }

    #[test]
    fn partition_errors_are_counted_each() {
        let resp = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(vec![
                PartitionProduceResponse::default().with_error_code(6),
                PartitionProduceResponse::default(),
                PartitionProduceResponse::default().with_error_code(6),
            ]),
        ]));
        let mut codes = Vec::new();
        error_codes(&resp, &mut |c| codes.push(c));
        assert_eq!(codes, vec![6, 0, 6]);
    }

    #[test]
    fn topics_past_the_cap_share_a_label() {
        let m = Metrics::new();
        m.set_topic_labels(2);
        assert_eq!(m.topic_label("a")[0].1, "a");
        assert_eq!(m.topic_label("b")[0].1, "b");
        assert_eq!(m.topic_label("c")[0].1, OTHER_TOPICS);
        assert_eq!(m.topic_label("a")[0].1, "a");
        m.set_topic_labels(0);
        assert_eq!(m.topic_label("d")[0].1, OTHER_TOPICS);
    }
}
