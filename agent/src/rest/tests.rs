//! The router on in-memory parts: produce, fetch, and every bad input
//! with its status and error code.

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{
    config::Settings,
    runtime::{open_core, Components, Core},
};

async fn api() -> (Router, Core) {
    api_with(Settings::default()).await
}

async fn api_with(settings: Settings) -> (Router, Core) {
    let settings = Settings {
        flush_interval: Duration::from_millis(5),
        rest_max_request_bytes: bytesize::ByteSize::kib(64),
        ..settings
    };
    let core = open_core(&settings, Components::in_memory()).await.unwrap();
    let router = std::sync::Arc::new(core.api(&settings)).router();
    (router, core)
}

/// Status and body (one JSON value per line).
async fn call(router: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Vec<Value>) {
    let resp = router
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let values = serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, values)
}

const T: &str = "/v3/clusters/silt-dev/topics";

async fn create(router: &Router, name: &str, partitions: i32, configs: Value) {
    let (status, body) = call(
        router,
        "POST",
        T,
        &json!({"topic_name": name, "partitions_count": partitions, "configs": configs})
            .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
}

async fn high_watermark(router: &Router, topic: &str, p: i32) -> i64 {
    let (status, body) = call(
        router,
        "GET",
        &format!("{T}/{topic}/partitions/{p}/records?offset=0&max_bytes=1"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    body[0]["high_watermark"].as_i64().unwrap()
}

#[tokio::test]
async fn records_produced_over_http_are_fetched_identically_at_their_offsets() {
    let (router, _core) = api().await;
    create(&router, "t", 2, json!([])).await;
    let records = [
        json!({"partition_id": 1, "key": {"type": "STRING", "data": "k0"},
               "value": {"type": "JSON", "data": {"n": 0}},
               "headers": [{"name": "h", "value": "AAE="}, {"name": "h", "value": null}],
               "timestamp": 1_700_000_000_123i64}),
        json!({"partition_id": 1, "value": {"type": "BINARY", "data": "/wA="},
               "timestamp": "2026-11-30T12:00:00.5Z"}),
        json!({"partition_id": 1, "key": {"type": "BINARY", "data": "a2V5"}}),
    ];
    let body: String = records.iter().map(|r| r.to_string()).collect();
    let (status, reports) = call(&router, "POST", &format!("{T}/t/records"), &body).await;
    assert_eq!(status, StatusCode::OK, "{reports:?}");
    assert_eq!(reports.len(), 3);
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r["error_code"], 200, "{r}");
        assert_eq!(r["partition_id"], 1);
        assert_eq!(r["offset"], i as i64, "dense offsets from 0");
    }
    assert_eq!(reports[0]["timestamp"], "2023-11-14T22:13:20.123Z");
    assert_eq!(reports[0]["key"], json!({"type": "STRING", "size": 2}));
    assert_eq!(reports[1]["key"], Value::Null);
    assert_eq!(reports[2]["value"], Value::Null);

    let (status, got) = call(
        &router,
        "GET",
        &format!("{T}/t/partitions/1/records?offset=1&format=string"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got:?}");
    let got = &got[0];
    assert_eq!(got["high_watermark"], 3);
    assert_eq!(got["next_offset"], 3);
    let recs = got["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "from offset 1 on: {recs:?}");
    assert_eq!(recs[0]["offset"], 1);
    assert_eq!(recs[0]["timestamp"], 1_796_040_000_500i64);
    assert_eq!(recs[0]["key"], Value::Null);
    // Not UTF-8: BINARY even when strings are asked for.
    assert_eq!(recs[0]["value"], json!({"type": "BINARY", "data": "/wA="}));
    assert_eq!(recs[1]["key"], json!({"type": "STRING", "data": "key"}));
    assert_eq!(recs[1]["value"], Value::Null);

    let (_, got) = call(&router, "GET", &format!("{T}/t/partitions/1/records"), "").await;
    let first = &got[0]["records"][0];
    assert_eq!(first["key"], json!({"type": "BINARY", "data": "azA="}));
    assert_eq!(
        first["value"]["data"], "eyJuIjowfQ==",
        "{{\"n\":0}} in base64"
    );
    assert_eq!(
        first["headers"],
        json!([{"name": "h", "value": "AAE="}, {"name": "h", "value": null}])
    );
    assert_eq!(high_watermark(&router, "t", 0).await, 0);

    // JSON data is stored as written (key order, spacing, big numbers);
    // null data is a null value whatever the type.
    let raw = r#"{"z": 1, "a": [123456789012345678901234567890]}"#;
    let body = format!(
        r#"{{"partition_id": 0, "key": {{"type": "JSON", "data": null}}, "value": {{"type": "JSON", "data": {raw}}}}}"#
    );
    let (status, r) = call(&router, "POST", &format!("{T}/t/records"), &body).await;
    assert_eq!(status, StatusCode::OK, "{r:?}");
    assert_eq!(r[0]["key"], Value::Null);
    let (_, got) = call(
        &router,
        "GET",
        &format!("{T}/t/partitions/0/records?format=string"),
        "",
    )
    .await;
    assert_eq!(got[0]["records"][0]["value"]["data"], raw);
    assert_eq!(got[0]["records"][0]["key"], Value::Null);
}

#[tokio::test]
async fn keyed_records_without_a_partition_go_where_kafka_puts_them() {
    let (router, _core) = api().await;
    create(&router, "k", 7, json!([])).await;
    for key in ["21", "foobar", "abc", "user-1"] {
        let (status, r) = call(
            &router,
            "POST",
            &format!("{T}/k/records"),
            &json!({"key": {"type": "STRING", "data": key}}).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let want = (super::produce::murmur2(key.as_bytes()) & 0x7fff_ffff) % 7;
        assert_eq!(r[0]["partition_id"], want, "{key}");
    }
}

#[tokio::test]
async fn bad_input_gets_its_status_and_code_and_writes_nothing() {
    let (router, _core) = api().await;
    create(
        &router,
        "b",
        1,
        json!([{"name": "max.message.bytes", "value": "1024"}]),
    )
    .await;
    let produce = format!("{T}/b/records");
    let good = json!({"value": {"type": "STRING", "data": "ok"}}).to_string();
    let big = "x".repeat(4096);
    let cases: Vec<(&str, String, String, StatusCode, u64)> = vec![
        (
            "invalid JSON",
            produce.clone(),
            "{\"value\": ".into(),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "wrong type",
            produce.clone(),
            r#"{"partition_id": "zero"}"#.into(),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "bad base64",
            produce.clone(),
            r#"{"value": {"type": "BINARY", "data": "***"}}"#.into(),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "bad header base64",
            produce.clone(),
            r#"{"headers": [{"name": "h", "value": "%%"}]}"#.into(),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "unknown type",
            produce.clone(),
            r#"{"value": {"type": "AVRO", "data": 1}}"#.into(),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "empty body",
            produce.clone(),
            "".into(),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "unknown topic",
            format!("{T}/nope/records"),
            good.clone(),
            StatusCode::NOT_FOUND,
            40401,
        ),
        (
            "partition out of range",
            produce.clone(),
            r#"{"partition_id": 1}"#.into(),
            StatusCode::NOT_FOUND,
            40402,
        ),
        (
            "record too large",
            produce.clone(),
            json!({"value": {"type": "STRING", "data": big}}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            41301,
        ),
        (
            "body too large",
            produce.clone(),
            " ".repeat(70 * 1024) + &good,
            StatusCode::PAYLOAD_TOO_LARGE,
            413,
        ),
        (
            "last record bad",
            produce.clone(),
            format!("{good}{good}{{\"partition_id\": 9}}"),
            StatusCode::NOT_FOUND,
            40402,
        ),
        (
            "unknown cluster",
            "/v3/clusters/other/topics/b/records".into(),
            good.clone(),
            StatusCode::NOT_FOUND,
            404,
        ),
        (
            "timestamp in microseconds",
            produce.clone(),
            r#"{"value": null, "timestamp": 1700000000000000}"#.into(),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "timestamp with a bad offset",
            produce.clone(),
            r#"{"timestamp": "2026-01-01T00:00:00+99:00"}"#.into(),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "path not UTF-8",
            format!("{T}/%FF/records"),
            good.clone(),
            StatusCode::BAD_REQUEST,
            400,
        ),
    ];
    for (what, uri, body, status, code) in cases {
        let (got, answer) = call(&router, "POST", &uri, &body).await;
        assert_eq!(got, status, "{what}: {answer:?}");
        assert_eq!(answer.len(), 1, "{what}: one error object");
        assert_eq!(answer[0]["error_code"], code, "{what}: {answer:?}");
        assert!(
            answer[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        assert_eq!(
            high_watermark(&router, "b", 0).await,
            0,
            "{what}: nothing written"
        );
    }
    let fetch = |q: &str| format!("{T}/b/partitions/0/records?{q}");
    for (what, uri, status, code) in [
        (
            "offset out of range",
            fetch("offset=5"),
            StatusCode::RANGE_NOT_SATISFIABLE,
            41601,
        ),
        (
            "offset not a number",
            fetch("offset=x"),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "unknown format",
            fetch("format=avro"),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "unknown parameter",
            fetch("ofset=1"),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "unknown topic",
            format!("{T}/nope/partitions/0/records"),
            StatusCode::NOT_FOUND,
            40401,
        ),
        (
            "partition out of range",
            format!("{T}/b/partitions/3/records"),
            StatusCode::NOT_FOUND,
            40402,
        ),
        (
            "partition not a number",
            format!("{T}/b/partitions/x/records"),
            StatusCode::BAD_REQUEST,
            400,
        ),
        (
            "no such route",
            "/v2/topics".into(),
            StatusCode::NOT_FOUND,
            404,
        ),
    ] {
        let (got, answer) = call(&router, "GET", &uri, "").await;
        assert_eq!(got, status, "{what}: {answer:?}");
        assert_eq!(answer[0]["error_code"], code, "{what}: {answer:?}");
    }
    // And it still serves.
    let (status, r) = call(&router, "POST", &produce, &good).await;
    assert_eq!(status, StatusCode::OK, "{r:?}");
    assert_eq!(r[0]["offset"], 0);
}

#[tokio::test]
async fn a_fetch_at_the_high_watermark_waits_for_the_next_record() {
    let (router, _core) = api().await;
    create(&router, "w", 1, json!([])).await;
    let waiting = {
        let router = router.clone();
        tokio::spawn(async move {
            call(
                &router,
                "GET",
                &format!("{T}/w/partitions/0/records?offset=0&max_wait_ms=10000"),
                "",
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "no record yet: still waiting");
    let (status, _) = call(
        &router,
        "POST",
        &format!("{T}/w/records"),
        r#"{"value": {"type": "STRING", "data": "late"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, got) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken by the record, well before max_wait_ms")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got[0]["records"][0]["value"]["data"], "bGF0ZQ==");
}

#[tokio::test]
async fn offsets_commit_and_read_back_and_topics_are_managed() {
    let (router, _core) = api().await;
    create(&router, "o", 2, json!([])).await;
    let (status, again) = call(&router, "POST", T, r#"{"topic_name": "o"}"#).await;
    assert_eq!(
        (status, &again[0]["error_code"]),
        (StatusCode::BAD_REQUEST, &json!(40002))
    );
    let (status, bad) = call(
        &router,
        "POST",
        T,
        r#"{"topic_name": "p", "partitions_count": 0}"#,
    )
    .await;
    assert_eq!(
        (status, &bad[0]["error_code"]),
        (StatusCode::BAD_REQUEST, &json!(40003))
    );

    let url = "/v3/clusters/silt-dev/consumer-groups/g/offsets";
    let commit = json!({"offsets": [
        {"topic_name": "o", "partition_id": 1, "offset": 17, "metadata": "m"},
        {"topic_name": "o", "partition_id": 0, "offset": 3}]});
    let (status, r) = call(&router, "POST", url, &commit.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{r:?}");
    let (status, r) = call(&router, "GET", url, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        r[0]["data"],
        json!([{"topic_name": "o", "partition_id": 0, "offset": 3, "metadata": null},
               {"topic_name": "o", "partition_id": 1, "offset": 17, "metadata": "m"}])
    );
    let (status, r) = call(
        &router,
        "POST",
        url,
        r#"{"offsets": [{"topic_name": "o", "partition_id": 2, "offset": 1}]}"#,
    )
    .await;
    assert_eq!(
        (status, &r[0]["error_code"]),
        (StatusCode::NOT_FOUND, &json!(40402))
    );
    let (status, r) = call(
        &router,
        "POST",
        url,
        r#"{"offsets": [{"topic_name": "o", "partition_id": 1, "offset": 1},
                        {"topic_name": "o", "partition_id": 1, "offset": 2}]}"#,
    )
    .await;
    assert_eq!(
        (status, &r[0]["error_code"]),
        (StatusCode::BAD_REQUEST, &json!(400)),
        "a partition twice"
    );

    let (status, r) = call(&router, "GET", &format!("{T}/o/partitions"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r[0]["data"].as_array().unwrap().len(), 2);
    let (status, _) = call(&router, "DELETE", &format!("{T}/o"), "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, r) = call(&router, "GET", &format!("{T}/o"), "").await;
    assert_eq!(
        (status, &r[0]["error_code"]),
        (StatusCode::NOT_FOUND, &json!(40401))
    );
}

#[tokio::test]
async fn records_per_request_and_per_answer_are_bounded_and_fetches_page_by_next_offset() {
    let (router, _core) = api_with(Settings {
        rest_max_records: 5,
        ..Settings::default()
    })
    .await;
    create(&router, "m", 1, json!([])).await;
    let records = |n: usize, tag: &str| -> String {
        (0..n)
            .map(|i| json!({"value": {"type": "STRING", "data": format!("{tag}{i}")}}).to_string())
            .collect()
    };
    let (status, r) = call(&router, "POST", &format!("{T}/m/records"), &records(6, "x")).await;
    assert_eq!(
        (status, &r[0]["error_code"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!(413))
    );
    assert_eq!(high_watermark(&router, "m", 0).await, 0, "nothing written");
    for tag in ["a", "b"] {
        let (status, r) = call(&router, "POST", &format!("{T}/m/records"), &records(5, tag)).await;
        assert_eq!(status, StatusCode::OK, "{r:?}");
    }
    // The ten records come back five at a time, then one at a time when
    // max_bytes holds one, each page starting where the last ended.
    let mut values = Vec::new();
    let mut offset = 0;
    for (max_bytes, want) in [(1 << 20, 5), (1, 1), (1, 1), (1 << 20, 3)] {
        let (status, got) = call(
            &router,
            "GET",
            &format!(
                "{T}/m/partitions/0/records?offset={offset}&max_bytes={max_bytes}&format=string"
            ),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{got:?}");
        let recs = got[0]["records"].as_array().unwrap();
        assert_eq!(
            recs.len(),
            want,
            "max_bytes {max_bytes} from {offset}: {recs:?}"
        );
        for r in recs {
            assert_eq!(r["offset"], values.len() as i64, "dense, in order");
            values.push(r["value"]["data"].as_str().unwrap().to_string());
        }
        offset = got[0]["next_offset"].as_i64().unwrap();
        assert_eq!(offset, values.len() as i64);
    }
    assert_eq!(
        values,
        ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4"]
    );
}

/// A small deterministic generator for the randomized runs below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Randomized runs with faults: concurrent HTTP producers send requests of
/// random records (explicit, keyed and unkeyed partitions, headers, sizes
/// that split a partition's records over several batches) while PUTs fail
/// and commit answers are lost. Then every partition is read back whole:
/// every acknowledged record is at the offset its answer gave, exactly once;
/// offsets are dense; nothing of a request answered 503 is there; a record
/// of a request answered 504 (outcome unknown) is there at most once.
/// `SILT_REST_SEEDS` runs more seeds (default 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_http_produces_with_faults_land_exactly_where_answered() {
    use std::collections::{BTreeMap, HashMap};

    use crate::faults::TestFaults;

    let seeds: u64 = std::env::var("SILT_REST_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let (mut acked_total, mut refused_total, mut unknown_total) = (0, 0, 0);
    for seed in 1..=seeds {
        let faults = TestFaults::parse(&format!(
            "put_error_rate=0.3,commit_ack_loss_rate=0.1,seed={seed}"
        ))
        .unwrap();
        let mut parts = Components::in_memory();
        parts.bucket = faults.wrap_bucket(parts.bucket);
        parts.meta = faults.wrap_meta(parts.meta, "dev");
        let settings = Settings {
            flush_interval: Duration::from_millis(2),
            ..Settings::default()
        };
        let core = open_core(&settings, parts).await.unwrap();
        let router = std::sync::Arc::new(core.api(&settings)).router();
        let max_message = 200 + Rng(seed * 7919).below(1500);
        create(
            &router,
            "r",
            3,
            json!([{"name": "max.message.bytes", "value": max_message.to_string()}]),
        )
        .await;

        let mut tasks = Vec::new();
        for task in 0..4u64 {
            let router = router.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(seed * 1_000_003 + task * 31 + 1);
                // (value tag → expected (partition, offset)) per outcome
                let mut acked = Vec::new();
                let mut refused = Vec::new();
                let mut unknown = Vec::new();
                for req in 0..6 {
                    let n = 1 + rng.below(12) as usize;
                    let mut body = String::new();
                    let mut tags = Vec::new();
                    for i in 0..n {
                        let tag = format!("s{seed}-t{task}-r{req}-i{i}-");
                        let pad = "x".repeat(rng.below(max_message / 3) as usize);
                        let mut rec =
                            json!({"value": {"type": "STRING", "data": format!("{tag}{pad}")}});
                        match rng.below(3) {
                            0 => rec["partition_id"] = json!(rng.below(3)),
                            1 => {
                                rec["key"] =
                                    json!({"type": "STRING", "data": format!("k{}", rng.below(50))})
                            }
                            _ => {}
                        }
                        if rng.below(2) == 0 {
                            rec["headers"] = json!([{"name": "t", "value": "AQI="}]);
                        }
                        body.push_str(&rec.to_string());
                        tags.push(tag);
                    }
                    let (status, answer) =
                        call(&router, "POST", &format!("{T}/r/records"), &body).await;
                    match status {
                        StatusCode::OK => {
                            assert_eq!(answer.len(), n);
                            for (tag, a) in tags.into_iter().zip(&answer) {
                                match a["error_code"].as_u64() {
                                    Some(200) => acked.push((
                                        tag,
                                        a["partition_id"].as_i64().unwrap(),
                                        a["offset"].as_i64().unwrap(),
                                    )),
                                    Some(50401) => unknown.push(tag),
                                    Some(50003) => refused.push(tag),
                                    other => panic!("seed {seed}: report {other:?}: {a}"),
                                }
                            }
                        }
                        StatusCode::SERVICE_UNAVAILABLE => refused.extend(tags),
                        StatusCode::GATEWAY_TIMEOUT => unknown.extend(tags),
                        s => panic!("seed {seed}: {s}: {answer:?}"),
                    }
                }
                (acked, refused, unknown)
            }));
        }
        let mut acked = Vec::new();
        let mut refused = Vec::new();
        let mut unknown = Vec::new();
        for t in tasks {
            let (a, r, u) = t.await.unwrap();
            acked.extend(a);
            refused.extend(r);
            unknown.extend(u);
        }

        // Read every partition whole.
        let mut found: HashMap<String, (i64, i64)> = HashMap::new();
        for p in 0..3i64 {
            let mut offset = 0;
            let mut expected_offset = 0;
            loop {
                let (status, got) = call(
                    &router,
                    "GET",
                    &format!("{T}/r/partitions/{p}/records?offset={offset}"),
                    "",
                )
                .await;
                assert_eq!(status, StatusCode::OK, "seed {seed}: {got:?}");
                for r in got[0]["records"].as_array().unwrap() {
                    assert_eq!(
                        r["offset"], expected_offset,
                        "seed {seed}: dense offsets in {p}"
                    );
                    expected_offset += 1;
                    let value = r["value"]["data"].as_str().unwrap();
                    let raw = String::from_utf8(
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, value)
                            .unwrap(),
                    )
                    .unwrap();
                    let tag = raw.trim_end_matches('x').to_string();
                    let at = (p, r["offset"].as_i64().unwrap());
                    assert!(
                        found.insert(tag.clone(), at).is_none(),
                        "seed {seed}: {tag} twice"
                    );
                }
                offset = got[0]["next_offset"].as_i64().unwrap();
                if offset >= got[0]["high_watermark"].as_i64().unwrap() {
                    break;
                }
            }
        }
        for (tag, p, o) in &acked {
            assert_eq!(found.get(tag), Some(&(*p, *o)), "seed {seed}: acked {tag}");
        }
        for tag in &refused {
            assert!(
                !found.contains_key(tag),
                "seed {seed}: refused {tag} was written"
            );
        }
        let stray: BTreeMap<_, _> = found
            .iter()
            .filter(|(t, _)| !acked.iter().any(|(a, _, _)| a == *t) && !unknown.contains(t))
            .collect();
        assert!(
            stray.is_empty(),
            "seed {seed}: records nobody wrote: {stray:?}"
        );
        acked_total += acked.len();
        refused_total += refused.len();
        unknown_total += unknown.len();
        core.producer_stop.cancel();
        let _ = core.producer_done.await;
    }
    // The faults did happen, and most writes got through.
    assert!(
        refused_total + unknown_total > 0,
        "no fault reached a client"
    );
    assert!(
        acked_total > refused_total + unknown_total,
        "{acked_total} acked"
    );
    eprintln!("{seeds} seeds: {acked_total} records acknowledged, {refused_total} refused, {unknown_total} unknown");
}
