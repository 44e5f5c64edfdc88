use std::sync::Arc;

use kafka_protocol::{
    messages::{
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ProduceRequest, ProduceResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use silt_tiering::{batch, segment::BatchMeta};

use super::code;
use crate::{
    broker::Broker,
    produce::{AppendError, PartitionAppend},
};

/// Where a partition's answer comes from: decided now, or the append at
/// this index.
enum Slot {
    Done(i16, Option<String>),
    Append(usize),
}

/// Validates the request and queues its batches now, in request order;
/// the returned future waits for the commit and builds the response.
pub async fn handle(
    broker: Arc<Broker>,
    req: ProduceRequest,
) -> impl std::future::Future<Output = Option<ProduceResponse>> + Send + 'static {
    let acks = req.acks;
    let mut appends = Vec::new();
    let mut plan = Vec::with_capacity(req.topic_data.len());
    if !matches!(acks, -1..=1) {
        let err = code(ResponseError::InvalidRequiredAcks);
        for t in &req.topic_data {
            let slots = t
                .partition_data
                .iter()
                .map(|p| (p.index, Slot::Done(err, None)))
                .collect();
            plan.push((t.name.clone(), slots));
        }
    } else {
        for t in req.topic_data {
            let name = t.name.0.to_string();
            let topic = broker.resolve_topic(&name, true).await;
            let max_message = topic.and_then(|_| {
                broker.log.state().topics.get(&name).and_then(|t| {
                    t.config
                        .get("max.message.bytes")
                        .and_then(|v| v.parse::<usize>().ok())
                })
            });
            let mut slots = Vec::with_capacity(t.partition_data.len());
            for p in t.partition_data {
                let slot = match topic {
                    None => Slot::Done(code(ResponseError::UnknownTopicOrPartition), None),
                    Some((_, n)) if p.index < 0 || p.index as usize >= n => {
                        Slot::Done(code(ResponseError::UnknownTopicOrPartition), None)
                    }
                    Some((id, _)) => match validate(p.records.unwrap_or_default(), max_message) {
                        Ok((data, batches, min_ts)) => {
                            appends.push(PartitionAppend {
                                topic: id,
                                partition: p.index,
                                data,
                                batches,
                                min_timestamp: min_ts,
                            });
                            Slot::Append(appends.len() - 1)
                        }
                        Err((err, msg)) => {
                            tracing::debug!(topic = %name, partition = p.index, error = %msg, "produce rejected");
                            Slot::Done(code(err), Some(msg))
                        }
                    },
                };
                slots.push((p.index, slot));
            }
            plan.push((t.name, slots));
        }
    }
    let committed = if appends.is_empty() {
        None
    } else {
        Some(broker.producer.submit(appends).await)
    };
    async move {
        let results = match committed {
            Some(c) => c.await,
            None => Vec::new(),
        };
        if acks == 0 {
            return None;
        }
        respond(&broker, plan, &results)
    }
}

fn respond(
    broker: &Broker,
    plan: Vec<(TopicName, Vec<(i32, Slot)>)>,
    results: &[Result<i64, AppendError>],
) -> Option<ProduceResponse> {
    let state = broker.log.state();
    let responses = plan
        .into_iter()
        .map(|(name, slots)| {
            let log_start = |p: i32| {
                state
                    .topics
                    .get(name.0.as_str())
                    .and_then(|t| t.partitions.get(p as usize))
                    .map_or(-1, |p| p.log_start_offset)
            };
            let partition_responses = slots
                .into_iter()
                .map(|(index, slot)| {
                    let r = PartitionProduceResponse::default().with_index(index);
                    let (err, msg, base) = match slot {
                        Slot::Done(err, msg) => (err, msg, -1),
                        Slot::Append(i) => match &results[i] {
                            Ok(base) => (0, None, *base),
                            Err(AppendError::UnknownTopicOrPartition) => {
                                (code(ResponseError::UnknownTopicOrPartition), None, -1)
                            }
                            Err(AppendError::OutOfOrderSequence) => {
                                (code(ResponseError::OutOfOrderSequenceNumber), None, -1)
                            }
                            Err(AppendError::InvalidProducerEpoch) => {
                                (code(ResponseError::InvalidProducerEpoch), None, -1)
                            }
                            Err(e @ AppendError::Storage(_)) => (
                                code(ResponseError::KafkaStorageError),
                                Some(e.to_string()),
                                -1,
                            ),
                            Err(e @ AppendError::ShuttingDown) => (
                                code(ResponseError::NotLeaderOrFollower),
                                Some(e.to_string()),
                                -1,
                            ),
                        },
                    };
                    r.with_error_code(err)
                        .with_error_message(msg.map(StrBytes::from_string))
                        .with_base_offset(base)
                        .with_log_start_offset(if err == 0 { log_start(index) } else { -1 })
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

type Validated = (bytes::Bytes, Vec<BatchMeta>, i64);

fn validate(
    records: bytes::Bytes,
    max_message: Option<usize>,
) -> Result<Validated, (ResponseError, String)> {
    let headers = batch::parse_all(&records).map_err(|e| {
        let kind = match e {
            batch::BatchError::Crc { .. } => ResponseError::CorruptMessage,
            batch::BatchError::Magic { .. } => ResponseError::UnsupportedForMessageFormat,
            _ => ResponseError::CorruptMessage,
        };
        (kind, e.to_string())
    })?;
    let mut min_ts = i64::MAX;
    let mut metas = Vec::with_capacity(headers.len());
    for h in headers {
        if let Some(max) = max_message {
            if h.size as usize > max {
                return Err((
                    ResponseError::MessageTooLarge,
                    format!(
                        "record batch of {} bytes exceeds max.message.bytes {max}",
                        h.size
                    ),
                ));
            }
        }
        if h.attributes & 0x10 != 0 {
            return Err((
                ResponseError::TransactionalIdAuthorizationFailed,
                "transactional batches are not supported".into(),
            ));
        }
        min_ts = min_ts.min(h.base_timestamp);
        metas.push(BatchMeta {
            size: h.size,
            records: h.record_count(),
            max_timestamp: h.max_timestamp,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
        });
    }
    Ok((records, metas, min_ts))
}
