//! CreateTopics and DeleteTopics.

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        create_topics_response::CreatableTopicResult, delete_topics_response::DeletableTopicResult,
        CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
        TopicName,
    },
    protocol::StrBytes,
};
use silt_coordinator::{topic_config, TopicId};
use uuid::Uuid;

use crate::{
    broker::Broker,
    error::{Classify, ErrorKind},
    topics::TopicError,
};

/// The overrides a CreateTopics entry asks for. A config with a null value
/// means "the default": skipped if silt knows it.
fn overrides(
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
) -> Result<BTreeMap<String, String>, TopicError> {
    let mut out = BTreeMap::new();
    for c in configs {
        let name = c.name.to_string();
        match &c.value {
            Some(v) => {
                out.insert(name, v.to_string());
            }
            None if topic_config::is_known(&name) => {}
            None => topic_config::validate(&name, "")?,
        }
    }
    Ok(out)
}

pub async fn create(broker: &Broker, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let partitions = if t.num_partitions == -1 {
            broker.topics.default_partitions() as i32
        } else {
            t.num_partitions
        };
        let created = if !t.assignments.is_empty() {
            Err(TopicError::Unsupported(
                "manual replica assignment is not supported: silt has no replicas".into(),
            ))
        } else if t.replication_factor != -1 && t.replication_factor < 1 {
            Err(TopicError::InvalidReplicationFactor(format!(
                "replication factor {} is below 1",
                t.replication_factor
            )))
        } else {
            match overrides(&t.configs) {
                Ok(config) => {
                    broker
                        .topics
                        .create(&name, partitions, config, req.validate_only)
                        .await
                }
                Err(e) => Err(e),
            }
        };
        results.push(match created {
            Ok(info) => {
                let r = result
                    .with_num_partitions(partitions)
                    .with_replication_factor(1);
                if req.validate_only {
                    r
                } else {
                    r.with_topic_id(Uuid::from_bytes(info.id.0))
                }
            }
            Err(e) => result
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete(
    broker: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v0-5 name topics in `topic_names`; v6 in `topics` (by name or id).
    let mut targets: Vec<(Option<String>, Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .collect();
    if version >= 6 {
        targets.extend(
            req.topics
                .iter()
                .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
        );
    }
    let mut out = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let name = name.or_else(|| broker.topics.name_of(&TopicId(*id.as_bytes())));
        let mut r = DeletableTopicResult::default().with_topic_id(id);
        if version >= 6 || name.is_some() {
            r = r.with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))));
        }
        let Some(name) = name else {
            out.push(r.with_error_code(ErrorKind::UnknownTopicId.code()));
            continue;
        };
        out.push(match broker.topics.delete(&name).await {
            Ok(id) => r.with_topic_id(Uuid::from_bytes(id.0)),
            Err(e @ TopicError::NotFound(_)) => r.with_error_code(e.code()),
            Err(e) => r
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        });
    }
    DeleteTopicsResponse::default().with_responses(out)
}
