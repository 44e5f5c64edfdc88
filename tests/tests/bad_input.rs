//! Bad input against a running `silt dev`: each case gets a Kafka error or a
//! closed connection, the server keeps serving, committed data is intact.

use std::io::Write;

use bytes::{BufMut, BytesMut};
use kafka_protocol::{
    messages::{
        create_topics_request::CreatableTopic,
        fetch_request::{FetchPartition, FetchTopic},
        produce_request::{PartitionProduceData, TopicProduceData},
        ApiVersionsRequest, CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest,
        TopicName,
    },
    protocol::StrBytes,
};
use silt_tests::{batch_offsets, record_batch, Client, Silt};

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn produce(c: &mut Client, t: &str, partition: i32, records: bytes::Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(t))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let resp = c.call(&req, 9).expect("produce response");
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch(c: &mut Client, t: &str, partition: i32, offset: i64) -> (i16, i64, Vec<i64>) {
    let req = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(t))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c.call(&req, 12).expect("fetch response");
    let p = &resp.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        batch_offsets(p.records.clone().unwrap_or_default()),
    )
}

/// A v1 request header (API key, version, correlation id, null client id)
/// with no body.
fn raw_header(key: i16, version: i16, correlation_id: i32) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i16(key);
    body.put_i16(version);
    body.put_i32(correlation_id);
    body.put_i16(-1);
    body
}

fn healthy(silt: &mut Silt) {
    assert!(silt.alive(), "server died: {}", silt.log_tail());
    let mut c = silt.client().unwrap();
    let r = c.call(&ApiVersionsRequest::default(), 3).unwrap();
    assert_eq!(r.error_code, 0);
    assert!(!r.api_keys.is_empty());
}

#[test]
fn bad_input_gets_errors_or_closed_connections_and_data_survives() {
    let mut silt = Silt::start(&["--no-auto-create"]).unwrap();
    let mut c = silt.client().unwrap();

    // Set up committed data first.
    let created = c
        .call(
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic("good"))
                    .with_num_partitions(2)
                    .with_replication_factor(1)]),
            5,
        )
        .unwrap();
    assert_eq!(created.topics[0].error_code, 0);
    let (err, base) = produce(&mut c, "good", 1, record_batch(&[b"one", b"two", b"three"]));
    assert_eq!((err, base), (0, 0));

    // 1. A bad CRC: CORRUPT_MESSAGE (2), nothing stored.
    let mut bad = record_batch(&[b"x"]).to_vec();
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    assert_eq!(produce(&mut c, "good", 1, bad.into()).0, 2);
    // Truncated batch inside a valid frame: CORRUPT_MESSAGE too.
    let short = record_batch(&[b"y"]);
    assert_eq!(
        produce(&mut c, "good", 1, short.slice(..short.len() - 3)).0,
        2
    );
    // Unknown topic with auto-create off: UNKNOWN_TOPIC_OR_PARTITION (3).
    assert_eq!(produce(&mut c, "missing", 0, record_batch(&[b"z"])).0, 3);
    // Unknown partition.
    assert_eq!(produce(&mut c, "good", 7, record_batch(&[b"z"])).0, 3);
    // Metadata for a missing topic with auto-create off.
    let md = c
        .call(
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(topic("missing"))),
                ]))
                .with_allow_auto_topic_creation(true),
            12,
        )
        .unwrap();
    assert_eq!(md.topics[0].error_code, 3);
    // Fetch past the end: OFFSET_OUT_OF_RANGE (1).
    assert_eq!(fetch(&mut c, "good", 1, 99).0, 1);
    healthy(&mut silt);

    // 2. ApiVersions at an unknown version: v0 response with UNSUPPORTED_VERSION (35).
    let mut raw = silt.client().unwrap();
    let body = raw_header(18, 99, 7);
    raw.send_raw(&body).unwrap();
    let mut frame = raw.recv_frame().unwrap().expect("a response");
    use bytes::Buf;
    assert_eq!(frame.get_i32(), 7, "correlation id");
    assert_eq!(frame.get_i16(), 35, "UNSUPPORTED_VERSION");

    // 3. Unsupported version of another API: connection closed.
    let mut raw = silt.client().unwrap();
    let body = raw_header(3, 99, 1);
    raw.send_raw(&body).unwrap();
    assert!(raw.closed_by_server());

    // 4. Unknown API key: connection closed.
    let mut raw = silt.client().unwrap();
    let body = raw_header(999, 0, 1);
    raw.send_raw(&body).unwrap();
    assert!(raw.closed_by_server());

    // 5. A valid header with a garbage body: connection closed.
    let mut raw = silt.client().unwrap();
    let mut body = raw_header(0, 9, 1);
    body.put_slice(&[0xff; 40]);
    raw.send_raw(&body).unwrap();
    assert!(raw.closed_by_server());

    // 6. A frame above max_request_bytes (100 MiB): closed before reading it.
    let mut raw = silt.client().unwrap();
    raw.stream.write_all(&(200i32 << 20).to_be_bytes()).unwrap();
    raw.stream.write_all(&[0u8; 64]).unwrap();
    assert!(raw.closed_by_server());

    // 7. Negative and tiny frame lengths: closed.
    for len in [-5i32, 3] {
        let mut raw = silt.client().unwrap();
        raw.stream.write_all(&len.to_be_bytes()).unwrap();
        raw.stream.write_all(&[0u8; 8]).unwrap();
        assert!(raw.closed_by_server());
    }

    // 8. A truncated frame, then the client goes away.
    let mut raw = silt.client().unwrap();
    raw.stream.write_all(&100i32.to_be_bytes()).unwrap();
    raw.stream.write_all(&[0u8; 10]).unwrap();
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(raw.closed_by_server());

    // The server still serves, and the committed records are intact.
    healthy(&mut silt);
    let mut c = silt.client().unwrap();
    let (err, hwm, batches) = fetch(&mut c, "good", 1, 0);
    // The encoder writes one batch per record here.
    assert_eq!((err, hwm, batches), (0, 3, vec![0, 1, 2]));
    let (err, base) = produce(&mut c, "good", 1, record_batch(&[b"four"]));
    assert_eq!((err, base), (0, 3));
    let (_, hwm, batches) = fetch(&mut c, "good", 1, 0);
    assert_eq!((hwm, batches), (4, vec![0, 1, 2, 3]));
}
