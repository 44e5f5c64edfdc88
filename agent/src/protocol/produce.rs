//! Produce: checks each partition's records, queues them on the write path
//! in request order, and answers once they are committed.

use std::sync::Arc;

use kafka_protocol::{
    messages::{
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ProduceRequest, ProduceResponse, TopicName,
    },
    protocol::StrBytes,
};

use crate::{
    broker::Broker,
    error::{Classify, ErrorKind},
    produce::{validate, AppendError, Limits, PartitionAppend},
    protocol::Conn,
    security::acl::op,
};

/// Where a partition's answer comes from: decided now, or the append at
/// this index.
enum Slot {
    Done(ErrorKind, Option<String>),
    Append(usize),
}

/// Validates the request and queues its batches now, in request order;
/// the returned future waits for the commit and builds the response.
pub async fn handle(
    broker: Arc<Broker>,
    req: ProduceRequest,
    conn: &Conn,
) -> impl std::future::Future<Output = Option<ProduceResponse>> + Send + 'static {
    let acks = req.acks;
    let mut appends = Vec::new();
    // (topic, bytes, records) of each append, counted once committed.
    let mut sizes: Vec<(String, u64, u64)> = Vec::new();
    let mut plan = Vec::with_capacity(req.topic_data.len());
    if !matches!(acks, -1..=1) {
        for t in &req.topic_data {
            let slots = t
                .partition_data
                .iter()
                .map(|p| (p.index, Slot::Done(ErrorKind::InvalidRequiredAcks, None)))
                .collect();
            plan.push((t.name.clone(), slots));
        }
    } else if req.transactional_id.as_ref().is_some_and(|id| {
        !conn.can(
            &broker,
            op::WRITE,
            crate::security::acl::resource::TRANSACTIONAL_ID,
            id.as_str(),
        )
    }) {
        for t in &req.topic_data {
            let slots = t
                .partition_data
                .iter()
                .map(|p| {
                    (
                        p.index,
                        Slot::Done(ErrorKind::TransactionalIdAuthorizationFailed, None),
                    )
                })
                .collect();
            plan.push((t.name.clone(), slots));
        }
    } else {
        for t in req.topic_data {
            let name = t.name.0.to_string();
            if !conn.can_topic(&broker, op::WRITE, &name) {
                let slots = t
                    .partition_data
                    .iter()
                    .map(|p| {
                        (
                            p.index,
                            Slot::Done(ErrorKind::TopicAuthorizationFailed, None),
                        )
                    })
                    .collect();
                plan.push((t.name, slots));
                continue;
            }
            let may_create =
                conn.can_cluster(&broker, op::CREATE) || conn.can_topic(&broker, op::CREATE, &name);
            let topic = broker.topics.resolve(&name, may_create).await;
            let config = topic.and_then(|_| broker.topics.config(&name));
            let mut slots = Vec::with_capacity(t.partition_data.len());
            let limits = Limits::new(broker.settings.message_max_bytes, broker.clock.now_ms());
            for p in t.partition_data {
                let slot = match (topic, &config) {
                    (Some(info), Some(config))
                        if p.index >= 0 && (p.index as usize) < info.partitions =>
                    {
                        match validate(p.records.unwrap_or_default(), config, limits) {
                            Ok(v) => {
                                sizes.push((
                                    name.clone(),
                                    v.data.len() as u64,
                                    v.batches.iter().map(|b| b.records as u64).sum(),
                                ));
                                appends.push(PartitionAppend {
                                    topic: info.id,
                                    partition: p.index,
                                    data: v.data,
                                    batches: v.batches,
                                    min_timestamp: v.min_timestamp,
                                });
                                Slot::Append(appends.len() - 1)
                            }
                            Err(e) => {
                                tracing::debug!(topic = %name, partition = p.index, error = %e, "produce rejected");
                                Slot::Done(e.kind(), Some(e.to_string()))
                            }
                        }
                    }
                    _ => Slot::Done(ErrorKind::UnknownTopicOrPartition, None),
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
        // One update per topic of the request (its partitions are together).
        let metrics = crate::metrics::global();
        let mut run: Option<(&str, u64, u64)> = None;
        for ((topic, bytes, records), r) in sizes.iter().zip(&results) {
            if r.is_err() {
                continue;
            }
            match &mut run {
                Some((t, b, n)) if *t == topic.as_str() => {
                    *b += bytes;
                    *n += records;
                }
                _ => {
                    if let Some((t, b, n)) = run.replace((topic, *bytes, *records)) {
                        metrics.produced(t, b, n);
                    }
                }
            }
        }
        if let Some((t, b, n)) = run {
            metrics.produced(t, b, n);
        }
        if acks == 0 {
            return None;
        }
        Some(respond(&broker, plan, &results))
    }
}

fn respond(
    broker: &Broker,
    plan: Vec<(TopicName, Vec<(i32, Slot)>)>,
    results: &[Result<i64, AppendError>],
) -> ProduceResponse {
    let responses = plan
        .into_iter()
        .map(|(name, slots)| {
            let partition_responses = slots
                .into_iter()
                .map(|(index, slot)| {
                    let r = PartitionProduceResponse::default().with_index(index);
                    let answer = match slot {
                        Slot::Done(kind, msg) => Err((kind, msg)),
                        Slot::Append(i) => results[i].clone().map_err(|e| {
                            // Only errors worth reading carry a message.
                            let msg = matches!(
                                e,
                                AppendError::Upload(_)
                                    | AppendError::Commit(_)
                                    | AppendError::ShuttingDown
                            )
                            .then(|| e.to_string());
                            (e.kind(), msg)
                        }),
                    };
                    match answer {
                        Ok(base) => {
                            let log_start = broker
                                .read
                                .position(name.0.as_str(), index)
                                .map_or(-1, |p| p.log_start_offset);
                            r.with_base_offset(base).with_log_start_offset(log_start)
                        }
                        Err((kind, msg)) => r
                            .with_error_code(kind.code())
                            .with_error_message(msg.map(StrBytes::from_string))
                            .with_base_offset(-1)
                            .with_log_start_offset(-1),
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
