//! Admin APIs: partitions, configs, cluster, records, producer ids.

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        alter_configs_response::AlterConfigsResourceResponse,
        create_partitions_response::CreatePartitionsTopicResult,
        delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
        describe_cluster_response::DescribeClusterBroker,
        describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult},
        incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult,
        offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult},
        AlterConfigsRequest, AlterConfigsResponse, BrokerId, CreatePartitionsRequest,
        CreatePartitionsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
        DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
        DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
        InitProducerIdRequest, InitProducerIdResponse, OffsetForLeaderEpochRequest,
        OffsetForLeaderEpochResponse, ProducerId,
    },
    protocol::StrBytes,
    ResponseError,
};
use silt_coordinator::{Command, Outcome};

use super::code;
use crate::{broker::Broker, topic_config};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub async fn create_partitions(
    broker: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let current = broker
            .log
            .state()
            .topics
            .get(&name)
            .map(|t| t.partitions.len() as i32);
        let fail = |e: ResponseError, m: String| {
            r.clone()
                .with_error_code(code(e))
                .with_error_message(Some(s(m)))
        };
        results.push(match current {
            None => fail(
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            ),
            Some(n) if t.count <= n => fail(
                ResponseError::InvalidPartitions,
                format!(
                    "topic {name} has {n} partitions; the new count {} must be larger",
                    t.count
                ),
            ),
            Some(_) if t.count as u32 > silt_coordinator::state::MAX_PARTITIONS => fail(
                ResponseError::InvalidPartitions,
                format!(
                    "at most {} partitions per topic",
                    silt_coordinator::state::MAX_PARTITIONS
                ),
            ),
            Some(_) if req.validate_only => r,
            Some(_) => match broker
                .log
                .propose(Command::CreatePartitions {
                    name: name.clone(),
                    partitions: t.count as u32,
                })
                .await
            {
                Ok(Outcome::PartitionsCreated) => {
                    tracing::info!(topic = %name, partitions = t.count, "partitions added");
                    r
                }
                Ok(Outcome::Invalid(m)) => fail(ResponseError::InvalidPartitions, m),
                Ok(_) => fail(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                ),
                Err(e) => fail(ResponseError::RequestTimedOut, e.to_string()),
            },
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub async fn describe_configs(
    broker: &Broker,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let mut results = Vec::new();
    for r in req.resources {
        let out = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let wanted: Option<Vec<String>> = r
            .configuration_keys
            .map(|k| k.iter().map(|k| k.to_string()).collect());
        match r.resource_type {
            TOPIC => {
                let overrides = broker
                    .log
                    .state()
                    .topics
                    .get(r.resource_name.as_str())
                    .map(|t| t.config.clone());
                let Some(overrides) = overrides else {
                    results.push(
                        out.with_error_code(code(ResponseError::UnknownTopicOrPartition))
                            .with_error_message(Some(s(format!(
                                "topic {} does not exist",
                                r.resource_name
                            )))),
                    );
                    continue;
                };
                let configs = topic_config::DEFAULTS
                    .iter()
                    .filter(|(k, _)| wanted.as_ref().is_none_or(|w| w.iter().any(|x| x == k)))
                    .map(|(k, default)| {
                        let (value, source) = match overrides.get(*k) {
                            Some(v) => (v.clone(), 1),        // DYNAMIC_TOPIC_CONFIG
                            None => (default.to_string(), 5), // DEFAULT_CONFIG
                        };
                        let mut c = DescribeConfigsResourceResult::default()
                            .with_name(s(*k))
                            .with_value(Some(s(value)))
                            .with_read_only(false);
                        if version >= 1 {
                            c = c.with_config_source(source);
                        }
                        c
                    })
                    .collect();
                results.push(out.with_configs(configs));
            }
            BROKER => results.push(out),
            other => results.push(
                out.with_error_code(code(ResponseError::InvalidRequest))
                    .with_error_message(Some(s(format!("resource type {other} is not supported")))),
            ),
        }
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Applies a new override set to a topic after validating it.
async fn set_topic_config(
    broker: &Broker,
    name: &str,
    edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), String>,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    let current = broker
        .log
        .state()
        .topics
        .get(name)
        .map(|t| t.config.clone());
    let mut config = current.ok_or((
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name} does not exist"),
    ))?;
    edit(&mut config).map_err(|m| (ResponseError::InvalidConfig, m))?;
    for (k, v) in &config {
        topic_config::validate(k, v).map_err(|m| (ResponseError::InvalidConfig, m))?;
    }
    if validate_only {
        return Ok(());
    }
    match broker
        .log
        .propose(Command::SetTopicConfig {
            name: name.to_string(),
            config,
        })
        .await
    {
        Ok(Outcome::ConfigSet) => Ok(()),
        Ok(_) => Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        )),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}

pub async fn alter_configs(broker: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut out = Vec::new();
    for r in req.resources {
        let resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let result = if r.resource_type != TOPIC {
            Err((
                ResponseError::InvalidRequest,
                "only topic configs can be altered".to_string(),
            ))
        } else {
            let new: Vec<(String, Option<String>)> = r
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            set_topic_config(
                broker,
                r.resource_name.as_str(),
                |config| {
                    // AlterConfigs replaces the whole override set.
                    config.clear();
                    for (k, v) in new {
                        if let Some(v) = v {
                            config.insert(k, v);
                        }
                    }
                    Ok(())
                },
                req.validate_only,
            )
            .await
        };
        out.push(match result {
            Ok(()) => resp,
            Err((e, m)) => resp.with_error_code(code(e)).with_error_message(Some(s(m))),
        });
    }
    AlterConfigsResponse::default().with_responses(out)
}

pub async fn incremental_alter_configs(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut out = Vec::new();
    for r in req.resources {
        let resp = IncrementalResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let result = if r.resource_type != TOPIC {
            Err((
                ResponseError::InvalidRequest,
                "only topic configs can be altered".to_string(),
            ))
        } else {
            let ops: Vec<(String, i8, Option<String>)> = r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.to_string()),
                    )
                })
                .collect();
            set_topic_config(
                broker,
                r.resource_name.as_str(),
                |config| {
                    for (k, op, v) in ops {
                        if !topic_config::is_known(&k) {
                            return Err(topic_config::validate(&k, "").unwrap_err());
                        }
                        match (op, v) {
                            (0, Some(v)) => {
                                config.insert(k, v);
                            }
                            (1, _) => {
                                config.remove(&k);
                            }
                            (2 | 3, _) => {
                                return Err(format!(
                                    "{k}: APPEND and SUBTRACT apply to list configs only"
                                ));
                            }
                            (op, _) => {
                                return Err(format!("{k}: invalid operation {op} or missing value"))
                            }
                        }
                    }
                    Ok(())
                },
                req.validate_only,
            )
            .await
        };
        out.push(match result {
            Ok(()) => resp,
            Err((e, m)) => resp.with_error_code(code(e)).with_error_message(Some(s(m))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(out)
}

pub async fn describe_cluster(
    broker: &Broker,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let agents = broker.membership.live();
    DescribeClusterResponse::default()
        .with_cluster_id(s(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(
            agents.first().map_or(broker.node_id, |a| a.node_id),
        ))
        .with_brokers(
            agents
                .into_iter()
                .map(|a| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(a.node_id))
                        .with_host(s(a.host))
                        .with_port(a.port)
                        .with_rack(a.zone.map(s))
                })
                .collect(),
        )
}

pub async fn delete_records(broker: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partitions {
            let r = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            let hwm = broker
                .log
                .state()
                .topics
                .get(&name)
                .and_then(|t| {
                    usize::try_from(p.partition_index)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                })
                .map(|p| p.high_watermark);
            let Some(hwm) = hwm else {
                parts.push(
                    r.with_low_watermark(-1)
                        .with_error_code(code(ResponseError::UnknownTopicOrPartition)),
                );
                continue;
            };
            // -1 means "up to the high watermark".
            let offset = if p.offset == -1 { hwm } else { p.offset };
            if offset < 0 || offset > hwm {
                parts.push(
                    r.with_low_watermark(-1)
                        .with_error_code(code(ResponseError::OffsetOutOfRange)),
                );
                continue;
            }
            parts.push(
                match broker
                    .log
                    .propose(Command::DeleteRecords {
                        name: name.clone(),
                        partition: p.partition_index,
                        offset,
                    })
                    .await
                {
                    Ok(Outcome::RecordsDeleted(low)) => r.with_low_watermark(low),
                    Ok(Outcome::Invalid(_)) => r
                        .with_low_watermark(-1)
                        .with_error_code(code(ResponseError::OffsetOutOfRange)),
                    Ok(_) => r
                        .with_low_watermark(-1)
                        .with_error_code(code(ResponseError::UnknownTopicOrPartition)),
                    Err(_) => r
                        .with_low_watermark(-1)
                        .with_error_code(code(ResponseError::RequestTimedOut)),
                },
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// silt has one leader epoch (0): the end offset of epoch 0 is the high
/// watermark, so clients validating their position after a leader change
/// never see truncation.
pub async fn offset_for_leader_epoch(
    broker: &Broker,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let state = broker.log.state();
    OffsetForLeaderEpochResponse::default().with_topics(
        req.topics
            .into_iter()
            .map(|t| {
                let topic = state.topics.get(t.topic.0.as_str());
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let r = EpochEndOffset::default().with_partition(p.partition);
                                match topic.and_then(|t| {
                                    usize::try_from(p.partition)
                                        .ok()
                                        .and_then(|i| t.partitions.get(i))
                                }) {
                                    Some(part) => {
                                        r.with_leader_epoch(0).with_end_offset(part.high_watermark)
                                    }
                                    None => r
                                        .with_error_code(code(
                                            ResponseError::UnknownTopicOrPartition,
                                        ))
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1),
                                }
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

pub async fn init_producer_id(
    broker: &Broker,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(code(ResponseError::TransactionalIdAuthorizationFailed))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // An existing producer bumping its epoch (KIP-360) keeps its id.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match broker.producer_ids.next().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "allocating a producer id failed");
            InitProducerIdResponse::default()
                .with_error_code(code(ResponseError::CoordinatorNotAvailable))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
