//! The transaction APIs: InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn, with
//! Kafka's authorization rules. The decisions are `crate::txn`'s.

use kafka_protocol::messages::{
    add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    },
    txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic},
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use silt_coordinator::{
    records::{TxnOffset, TxnPartition},
    TopicId,
};

use crate::{
    broker::Broker,
    error::{Classify, ErrorKind},
    protocol::Conn,
    security::acl::{op, resource},
};

/// A partition of AddPartitionsToTxn and its own error, if any.
type PartitionPlan = (i32, Option<ErrorKind>);

fn may_write_txn(broker: &Broker, conn: &Conn, id: &str) -> bool {
    conn.can(broker, op::WRITE, resource::TRANSACTIONAL_ID, id)
}

pub async fn init_producer_id(
    broker: &Broker,
    conn: &Conn,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let id = req
        .transactional_id
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_default();
    let fail = |kind: ErrorKind| {
        InitProducerIdResponse::default()
            .with_error_code(kind.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if !may_write_txn(broker, conn, &id) {
        return fail(ErrorKind::TransactionalIdAuthorizationFailed);
    }
    let given = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    match broker
        .txns
        .init_producer_id(&broker.txn_ctx(), &id, req.transaction_timeout_ms, given)
        .await
    {
        Ok((pid, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(e) => {
            tracing::debug!(transactional_id = %id, error = %e, "InitProducerId refused");
            fail(e.kind())
        }
    }
}

pub async fn add_partitions(
    broker: &Broker,
    conn: &Conn,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let id = req.v3_and_below_transactional_id.to_string();
    let pid = req.v3_and_below_producer_id.0;
    let epoch = req.v3_and_below_producer_epoch;
    let topics = req.v3_and_below_topics;
    // Per partition: the partition to add, or its own error.
    let txn_denied = !may_write_txn(broker, conn, &id);
    let mut wanted = Vec::new();
    let mut plan: Vec<(kafka_protocol::messages::TopicName, Vec<PartitionPlan>)> = Vec::new();
    for t in &topics {
        let name = t.name.as_str();
        let info = broker.topics.get(name);
        let allowed = conn.can_topic(broker, op::WRITE, name);
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                let error = if txn_denied {
                    Some(ErrorKind::TransactionalIdAuthorizationFailed)
                } else if !allowed {
                    Some(ErrorKind::TopicAuthorizationFailed)
                } else {
                    match &info {
                        Some(i) if *p >= 0 && (*p as usize) < i.partitions => {
                            wanted.push(TxnPartition {
                                topic: TopicId(i.id.0),
                                partition: *p,
                            });
                            None
                        }
                        _ => Some(ErrorKind::UnknownTopicOrPartition),
                    }
                };
                (*p, error)
            })
            .collect();
        plan.push((t.name.clone(), parts));
    }
    let any_error = plan
        .iter()
        .any(|(_, ps)| ps.iter().any(|(_, e)| e.is_some()));
    let outcome: Option<ErrorKind> = if any_error {
        Some(ErrorKind::OperationNotAttempted)
    } else {
        match broker
            .txns
            .add_partitions(&broker.txn_ctx(), &id, pid, epoch, &wanted)
            .await
        {
            Ok(()) => None,
            Err(e) => {
                tracing::debug!(transactional_id = %id, error = %e, "AddPartitionsToTxn refused");
                Some(e.kind())
            }
        }
    };
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
        plan.into_iter()
            .map(|(name, parts)| {
                AddPartitionsToTxnTopicResult::default()
                    .with_name(name)
                    .with_results_by_partition(
                        parts
                            .into_iter()
                            .map(|(p, e)| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(p)
                                    .with_partition_error_code(
                                        e.or(outcome).map_or(0, |k| k.code()),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

pub async fn add_offsets(
    broker: &Broker,
    conn: &Conn,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = req.transactional_id.to_string();
    let group = req.group_id.to_string();
    let code = if !may_write_txn(broker, conn, &id) {
        ErrorKind::TransactionalIdAuthorizationFailed.code()
    } else if !conn.can_group(broker, op::READ, &group) {
        ErrorKind::GroupAuthorizationFailed.code()
    } else {
        match broker
            .txns
            .add_group(
                &broker.txn_ctx(),
                &id,
                req.producer_id.0,
                req.producer_epoch,
                &group,
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub async fn txn_offset_commit(
    broker: &Broker,
    conn: &Conn,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let id = req.transactional_id.to_string();
    let group = req.group_id.to_string();
    // One error for every partition, when the request as a whole fails.
    let whole: Option<i16> = if !may_write_txn(broker, conn, &id) {
        Some(ErrorKind::TransactionalIdAuthorizationFailed.code())
    } else if !conn.can_group(broker, op::READ, &group) {
        Some(ErrorKind::GroupAuthorizationFailed.code())
    } else {
        match super::groups::coordinating(broker, &group)
            .await
            .and_then(|()| {
                if req.generation_id >= 0 || !req.member_id.is_empty() {
                    broker.groups.check_commit(
                        &group,
                        &req.member_id,
                        req.generation_id,
                        req.group_instance_id.as_deref(),
                    )
                } else {
                    Ok(())
                }
            }) {
            Ok(()) => None,
            Err(e) => Some(e.code()),
        }
    };
    // Per partition: its own error (topic authorization, unknown), if any.
    let mut offsets = Vec::new();
    let mut own: Vec<(usize, usize, i16)> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let name = t.name.as_str();
        let allowed = conn.can_topic(broker, op::READ, name);
        let info = broker.topics.get(name);
        for (pi, p) in t.partitions.iter().enumerate() {
            if !allowed {
                own.push((ti, pi, ErrorKind::TopicAuthorizationFailed.code()));
            } else if !info.as_ref().is_some_and(|i| {
                p.partition_index >= 0 && (p.partition_index as usize) < i.partitions
            }) {
                own.push((ti, pi, ErrorKind::UnknownTopicOrPartition.code()));
            } else {
                offsets.push(TxnOffset {
                    topic: name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            }
        }
    }
    let result = match whole {
        Some(code) => code,
        None if offsets.is_empty() => 0,
        None => match broker
            .txns
            .offsets(
                &broker.txn_ctx(),
                &id,
                req.producer_id.0,
                req.producer_epoch,
                &group,
                offsets,
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => e.code(),
        },
    };
    TxnOffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .enumerate()
                            .map(|(pi, p)| {
                                let code = own
                                    .iter()
                                    .find(|(a, b, _)| *a == ti && *b == pi)
                                    .map_or(result, |(_, _, c)| whole.unwrap_or(*c));
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

pub async fn end_txn(broker: &Broker, conn: &Conn, req: EndTxnRequest) -> EndTxnResponse {
    let id = req.transactional_id.to_string();
    let code = if !may_write_txn(broker, conn, &id) {
        ErrorKind::TransactionalIdAuthorizationFailed.code()
    } else {
        match broker
            .txns
            .end(
                &broker.txn_ctx(),
                &id,
                req.producer_id.0,
                req.producer_epoch,
                req.committed,
                crate::txn::EndOpts::default(),
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => {
                tracing::debug!(transactional_id = %id, error = %e, "EndTxn refused");
                e.code()
            }
        }
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(req.producer_id)
        .with_producer_epoch(req.producer_epoch)
}
