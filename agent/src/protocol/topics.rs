use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        create_topics_response::CreatableTopicResult, delete_topics_response::DeletableTopicResult,
        CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
        TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use silt_coordinator::{Command, Outcome, TopicId};
use uuid::Uuid;

use super::code;
use crate::broker::{validate_topic_name, Broker, TopicError};

pub async fn create(broker: &Broker, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let fail = |e: ResponseError, msg: String| {
            result
                .clone()
                .with_error_code(code(e))
                .with_error_message(Some(StrBytes::from_string(msg)))
        };
        let partitions = if t.num_partitions == -1 {
            broker.settings.default_partitions as i32
        } else {
            t.num_partitions
        };
        if !t.assignments.is_empty() {
            results.push(fail(
                ResponseError::InvalidRequest,
                "manual replica assignment is not supported: silt has no replicas".into(),
            ));
            continue;
        }
        if t.replication_factor != -1 && t.replication_factor < 1 {
            results.push(fail(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {} is below 1", t.replication_factor),
            ));
            continue;
        }
        let mut config = BTreeMap::new();
        let mut bad = None;
        for c in &t.configs {
            let k = c.name.to_string();
            let v = c.value.as_ref().map(|v| v.to_string());
            if let Err(m) = crate::topic_config::validate(&k, v.as_deref().unwrap_or_default()) {
                if v.is_some() || !crate::topic_config::is_known(&k) {
                    bad = Some(m);
                    break;
                }
            }
            if let Some(v) = v {
                config.insert(k, v);
            }
        }
        if let Some(msg) = bad {
            results.push(fail(ResponseError::InvalidConfig, msg));
            continue;
        }
        if let Err(e) = validate_topic_name(&name) {
            results.push(topic_error(result, e));
            continue;
        }
        if req.validate_only {
            let exists = broker.log.state().topics.contains_key(&name);
            results.push(if exists {
                fail(
                    ResponseError::TopicAlreadyExists,
                    format!("topic {name} already exists"),
                )
            } else {
                result
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
            });
            continue;
        }
        results.push(match broker.create_topic(&name, partitions, config).await {
            Ok((id, true)) => result
                .with_topic_id(Uuid::from_bytes(id.0))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
            Ok((_, false)) => fail(
                ResponseError::TopicAlreadyExists,
                format!("topic {name} already exists"),
            ),
            Err(e) => topic_error(result, e),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn topic_error(result: CreatableTopicResult, e: TopicError) -> CreatableTopicResult {
    let (err, msg) = match e {
        TopicError::InvalidName(m) => (ResponseError::InvalidTopicException, m),
        TopicError::InvalidPartitions(m) => (ResponseError::InvalidPartitions, m),
        TopicError::Exists => (
            ResponseError::TopicAlreadyExists,
            "topic already exists".into(),
        ),
        TopicError::Storage(m) => (ResponseError::RequestTimedOut, m),
    };
    result
        .with_error_code(code(err))
        .with_error_message(Some(StrBytes::from_string(msg)))
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
        let name = name.or_else(|| {
            let state = broker.log.state();
            state
                .topic_by_id(&TopicId(*id.as_bytes()))
                .map(|t| t.name.clone())
        });
        let mut r = DeletableTopicResult::default().with_topic_id(id);
        if version >= 6 || name.is_some() {
            r = r.with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))));
        }
        let Some(name) = name else {
            out.push(r.with_error_code(code(ResponseError::UnknownTopicId)));
            continue;
        };
        out.push(
            match broker
                .log
                .propose(Command::DeleteTopic { name: name.clone() })
                .await
            {
                Ok(Outcome::TopicDeleted(id)) => {
                    tracing::info!(topic = %name, id = %id, "topic deleted");
                    r.with_topic_id(Uuid::from_bytes(id.0))
                }
                Ok(_) => r.with_error_code(code(ResponseError::UnknownTopicOrPartition)),
                Err(e) => r
                    .with_error_code(code(ResponseError::RequestTimedOut))
                    .with_error_message(Some(StrBytes::from_string(e.to_string()))),
            },
        );
    }
    DeleteTopicsResponse::default().with_responses(out)
}
