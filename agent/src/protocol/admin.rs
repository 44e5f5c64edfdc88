//! Admin APIs: partitions, configs, cluster, records, producer ids.

use kafka_protocol::{
    messages::{
        alter_configs_response::AlterConfigsResourceResponse,
        create_partitions_response::CreatePartitionsTopicResult,
        delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
        describe_cluster_response::DescribeClusterBroker,
        describe_configs_response::{
            DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
        },
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
};
use silt_coordinator::topic_config::{self, ConfigError};

use crate::{
    broker::Broker,
    error::{Classify, ErrorKind},
    topics::TopicError,
};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// DescribeConfigs' source of a topic's own override.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub async fn create_partitions(
    broker: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in req.topics {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        results.push(
            match broker
                .topics
                .create_partitions(t.name.0.as_str(), t.count, req.validate_only)
                .await
            {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string()))),
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub async fn describe_configs(
    broker: &Broker,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    use crate::kafka_config;
    // This agent's broker configs: the topic configs' cluster defaults too.
    let broker_configs = kafka_config::describe(&broker.settings, broker.node_id);
    let mut results = Vec::new();
    for r in req.resources {
        let out = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let wanted: Option<Vec<String>> = r
            .configuration_keys
            .map(|k| k.iter().map(|k| k.to_string()).collect());
        let wanted = |k: &str| wanted.as_ref().is_none_or(|w| w.iter().any(|x| x == k));
        let synonym = |name: &str, value: Option<String>, source: i8| {
            DescribeConfigsSynonym::default()
                .with_name(s(name))
                .with_value(value.map(s))
                .with_source(source)
        };
        let entry = |name: &str,
                     value: Option<String>,
                     kind: topic_config::Kind,
                     source: i8,
                     read_only: bool,
                     sensitive: bool,
                     doc: &str,
                     synonyms: Vec<DescribeConfigsSynonym>| {
            let mut c = DescribeConfigsResourceResult::default()
                .with_name(s(name))
                .with_value(value.map(s))
                .with_read_only(read_only)
                .with_is_sensitive(sensitive)
                .with_config_source(source)
                .with_config_type(kind.code());
            if req.include_synonyms {
                c = c.with_synonyms(synonyms);
            }
            if req.include_documentation {
                c = c.with_documentation(Some(s(doc)));
            }
            c
        };
        match r.resource_type {
            TOPIC => {
                let Some(config) = broker.topics.config(r.resource_name.as_str()) else {
                    let e = TopicError::NotFound(r.resource_name.to_string());
                    results.push(
                        out.with_error_code(e.code())
                            .with_error_message(Some(s(e.to_string()))),
                    );
                    continue;
                };
                let configs = config
                    .describe()
                    .filter(|(spec, _)| wanted(spec.name))
                    .map(|(spec, set)| {
                        // The cluster default: the broker config Kafka
                        // names as the synonym, else the topic default.
                        let cluster = spec
                            .broker_synonym
                            .and_then(|b| broker_configs.iter().find(|c| c.name == b));
                        let default = match cluster {
                            Some(c) if c.value.is_some() => (c.value.clone(), c.source),
                            _ => (Some(spec.default.to_string()), kafka_config::DEFAULT_CONFIG),
                        };
                        let mut synonyms = Vec::new();
                        if let Some(v) = set {
                            synonyms.push(synonym(
                                spec.name,
                                Some(v.to_string()),
                                DYNAMIC_TOPIC_CONFIG,
                            ));
                        }
                        if let Some(b) = spec.broker_synonym {
                            synonyms.push(synonym(b, default.0.clone(), default.1));
                        }
                        let (value, source) = match set {
                            Some(v) => (Some(v.to_string()), DYNAMIC_TOPIC_CONFIG),
                            None => default,
                        };
                        entry(
                            spec.name, value, spec.kind, source, false, false, spec.doc, synonyms,
                        )
                    })
                    .collect();
                results.push(out.with_configs(configs));
            }
            BROKER => {
                let name = r.resource_name.as_str();
                if !name.is_empty() && name != broker.node_id.to_string() {
                    results.push(
                        out.with_error_code(ErrorKind::InvalidRequest.code())
                            .with_error_message(Some(s(format!(
                                "broker {name}'s configs are answered by broker {name}, this is broker {}",
                                broker.node_id
                            )))),
                    );
                    continue;
                }
                let configs = broker_configs
                    .iter()
                    .filter(|c| wanted(c.name))
                    .map(|c| {
                        let synonyms = vec![synonym(c.name, c.value.clone(), c.source)];
                        entry(
                            c.name,
                            c.value.clone(),
                            c.kind,
                            c.source,
                            c.read_only,
                            c.sensitive,
                            c.doc,
                            synonyms,
                        )
                    })
                    .collect();
                results.push(out.with_configs(configs));
            }
            other => results.push(
                out.with_error_code(ErrorKind::InvalidRequest.code())
                    .with_error_message(Some(s(format!("resource type {other} is not supported")))),
            ),
        }
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Only topic configs can be altered.
fn not_a_topic() -> TopicError {
    TopicError::Unsupported("only topic configs can be altered".to_string())
}

pub async fn alter_configs(broker: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut out = Vec::new();
    for r in req.resources {
        let resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let result = if r.resource_type != TOPIC {
            Err(not_a_topic())
        } else {
            let new: Vec<(String, Option<String>)> = r
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            broker
                .topics
                .alter_config(
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
            Err(e) => resp
                .with_error_code(e.code())
                .with_error_message(Some(s(e.to_string()))),
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
            Err(not_a_topic())
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
            broker
                .topics
                .alter_config(
                    r.resource_name.as_str(),
                    |config| {
                        let invalid = |name: &str, message: String| ConfigError {
                            name: name.to_string(),
                            message,
                        };
                        for (k, op, v) in ops {
                            if !topic_config::is_known(&k) {
                                topic_config::validate(&k, "")?;
                            }
                            match (op, v) {
                                (0, Some(v)) => {
                                    config.insert(k, v);
                                }
                                (1, _) => {
                                    config.remove(&k);
                                }
                                (op @ (2 | 3), Some(v)) => {
                                    let new = topic_config::list_op(
                                        &k,
                                        config.get(&k).map(String::as_str),
                                        op == 2,
                                        &v,
                                    )?;
                                    config.insert(k, new);
                                }
                                (op, _) => {
                                    return Err(invalid(
                                        &k,
                                        format!("{k}: invalid operation {op} or missing value"),
                                    ))
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
            Err(e) => resp
                .with_error_code(e.code())
                .with_error_message(Some(s(e.to_string()))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(out)
}

pub async fn describe_cluster(
    broker: &Broker,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let agents = broker.membership.brokers();
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
        let mut parts = Vec::new();
        for p in t.partitions {
            let r = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            parts.push(
                match broker
                    .topics
                    .delete_records(t.name.0.as_str(), p.partition_index, p.offset)
                    .await
                {
                    Ok(low) => r.with_low_watermark(low),
                    Err(e) => r.with_low_watermark(-1).with_error_code(e.code()),
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
    OffsetForLeaderEpochResponse::default().with_topics(
        req.topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let r = EpochEndOffset::default().with_partition(p.partition);
                        match broker.read.position(t.topic.0.as_str(), p.partition) {
                            Ok(part) => r.with_leader_epoch(0).with_end_offset(part.high_watermark),
                            Err(e) => r
                                .with_error_code(e.code())
                                .with_leader_epoch(-1)
                                .with_end_offset(-1),
                        }
                    })
                    .collect();
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

pub async fn init_producer_id(
    broker: &Broker,
    _req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    // With a transactional id, the transaction coordinator answers
    // (protocol::txn). Without one Kafka hands out a new producer id every
    // time, also to a producer naming its old one (KIP-360): the new id
    // starts a new sequence, and nothing of the old id is trusted.
    match broker.producer_ids.next().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "allocating a producer id failed");
            // The producer retries FindCoordinator and InitProducerId.
            InitProducerIdResponse::default()
                .with_error_code(ErrorKind::CoordinatorUnavailable.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
