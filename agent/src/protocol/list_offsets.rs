//! ListOffsets: translates each partition's query for the read path.

use kafka_protocol::messages::{
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    ListOffsetsRequest, ListOffsetsResponse,
};

use crate::{broker::Broker, error::Classify, fetch::OffsetQuery};

pub async fn handle(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    // Answer from a state as current as the metadata store's.
    broker.read.catch_up().await;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let r = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                // leader_epoch exists from v4 on; setting it earlier fails encoding.
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            let answer = match OffsetQuery::from_kafka(p.timestamp) {
                // read_committed: the latest offset is the last stable one.
                Ok(OffsetQuery::Latest) if req.isolation_level == 1 => broker
                    .read
                    .last_stable_offset(t.name.0.as_str(), p.partition_index)
                    .map(|o| Some((-1, o))),
                Ok(q) => {
                    broker
                        .read
                        .offset_for(t.name.0.as_str(), p.partition_index, q)
                        .await
                }
                Err(e) => Err(e),
            };
            parts.push(match answer {
                Ok(Some((ts, offset))) => r.with_timestamp(ts).with_offset(offset),
                // No record at or after the timestamp.
                Ok(None) => r.with_timestamp(-1).with_offset(-1),
                Err(e) => r
                    .with_error_code(e.code())
                    .with_timestamp(-1)
                    .with_offset(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
