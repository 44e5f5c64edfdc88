//! Clusters and topics (Confluent v3 shapes), and consumer-group offsets
//! (a silt extension).

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use silt_coordinator::offsets::Committed;

use super::{query_params, Api, ApiError, Params};
use crate::security::acl::{op, resource, CLUSTER_NAME};
use crate::topics::{TopicError, TopicInfo};

/// Replicas reported for every partition: durability comes from the
/// bucket, which keeps several copies.
const REPLICATION_FACTOR: i32 = 3;

fn cluster_json(api: &Api) -> Value {
    json!({
        "kind": "KafkaCluster",
        "metadata": {"self": api.url(""), "resource_name": format!("crn:///kafka={}", api.cluster_id)},
        "cluster_id": api.cluster_id,
        "topics": {"related": api.url("/topics")},
    })
}

fn topic_json(api: &Api, name: &str, t: &TopicInfo) -> Value {
    json!({
        "kind": "KafkaTopic",
        "metadata": {"self": api.url(&format!("/topics/{name}"))},
        "cluster_id": api.cluster_id,
        "topic_name": name,
        "is_internal": name.starts_with("__"),
        "replication_factor": REPLICATION_FACTOR,
        "partitions_count": t.partitions,
        "partitions": {"related": api.url(&format!("/topics/{name}/partitions"))},
    })
}

fn partition_json(api: &Api, topic: &str, p: i32) -> Value {
    json!({
        "kind": "KafkaPartition",
        "metadata": {"self": api.url(&format!("/topics/{topic}/partitions/{p}"))},
        "cluster_id": api.cluster_id,
        "topic_name": topic,
        "partition_id": p,
    })
}

fn list(kind: &str, self_url: String, data: Vec<Value>) -> Json<Value> {
    Json(json!({"kind": kind, "metadata": {"self": self_url, "next": null}, "data": data}))
}

pub(super) async fn clusters(State(api): State<Arc<Api>>) -> Json<Value> {
    list(
        "KafkaClusterList",
        "/v3/clusters".into(),
        vec![cluster_json(&api)],
    )
}

pub(super) async fn cluster(
    State(api): State<Arc<Api>>,
    Params(cluster): Params<String>,
) -> Result<Json<Value>, ApiError> {
    api.check_cluster(&cluster)?;
    Ok(Json(cluster_json(&api)))
}

pub(super) async fn topics(
    State(api): State<Arc<Api>>,
    Params(cluster): Params<String>,
    caller: Option<axum::Extension<super::Caller>>,
) -> Result<Json<Value>, ApiError> {
    api.check_cluster(&cluster)?;
    let data = api
        .topics
        .list()
        .iter()
        .filter(|(name, _)| api.may(&caller, op::DESCRIBE, resource::TOPIC, name))
        .map(|(name, t)| topic_json(&api, name, t))
        .collect();
    Ok(list("KafkaTopicList", api.url("/topics"), data))
}

#[derive(Deserialize)]
struct CreateTopic {
    topic_name: String,
    partitions_count: Option<i32>,
    replication_factor: Option<i32>,
    #[serde(default)]
    configs: Vec<ConfigEntry>,
}

#[derive(Deserialize)]
struct ConfigEntry {
    name: String,
    value: Option<String>,
}

pub(super) async fn create_topic(
    State(api): State<Arc<Api>>,
    Params(cluster): Params<String>,
    caller: Option<axum::Extension<super::Caller>>,
    body: Body,
) -> Result<Response, ApiError> {
    api.check_cluster(&cluster)?;
    let (body, _held) = api.read_body(body).await?;
    let req: CreateTopic = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid topic: {e}")))?;
    if !api.may(&caller, op::CREATE, resource::CLUSTER, CLUSTER_NAME) {
        api.allow(&caller, op::CREATE, resource::TOPIC, &req.topic_name)?;
    }
    let invalid = |m: String| ApiError::new(StatusCode::BAD_REQUEST, 40003, m);
    if let Some(rf) = req.replication_factor {
        if rf == 0 || rf < -1 {
            return Err(invalid(format!(
                "replication_factor {rf}: must be -1 or positive"
            )));
        }
    }
    let partitions = req
        .partitions_count
        .unwrap_or(api.topics.default_partitions() as i32);
    let mut overrides = BTreeMap::new();
    for c in req.configs {
        if let Some(v) = c.value {
            overrides.insert(c.name, v);
        }
    }
    match api
        .topics
        .create(&req.topic_name, partitions, overrides, false)
        .await
    {
        Ok(t) => Ok((
            StatusCode::CREATED,
            Json(topic_json(&api, &req.topic_name, &t)),
        )
            .into_response()),
        Err(TopicError::Exists(n)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            40002,
            format!("topic {n:?} already exists"),
        )),
        Err(
            e @ (TopicError::InvalidName(_)
            | TopicError::InvalidPartitions(_)
            | TopicError::InvalidReplicationFactor(_)
            | TopicError::Config(_)
            | TopicError::Unsupported(_)),
        ) => Err(invalid(e.to_string())),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

pub(super) async fn topic(
    State(api): State<Arc<Api>>,
    Params((cluster, topic)): Params<(String, String)>,
    caller: Option<axum::Extension<super::Caller>>,
) -> Result<Json<Value>, ApiError> {
    api.check_cluster(&cluster)?;
    api.allow(&caller, op::DESCRIBE, resource::TOPIC, &topic)?;
    let t = api.topic(&topic).await?;
    Ok(Json(topic_json(&api, &topic, &t)))
}

pub(super) async fn delete_topic(
    State(api): State<Arc<Api>>,
    Params((cluster, topic)): Params<(String, String)>,
    caller: Option<axum::Extension<super::Caller>>,
) -> Result<StatusCode, ApiError> {
    api.check_cluster(&cluster)?;
    api.allow(&caller, op::DELETE, resource::TOPIC, &topic)?;
    api.topic(&topic).await?;
    match api.topics.delete(&topic).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(TopicError::NotFound(n)) => Err(super::unknown_topic(&n)),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

pub(super) async fn partitions(
    State(api): State<Arc<Api>>,
    Params((cluster, topic)): Params<(String, String)>,
    caller: Option<axum::Extension<super::Caller>>,
) -> Result<Json<Value>, ApiError> {
    api.check_cluster(&cluster)?;
    api.allow(&caller, op::DESCRIBE, resource::TOPIC, &topic)?;
    let t = api.topic(&topic).await?;
    let data = (0..t.partitions as i32)
        .map(|p| partition_json(&api, &topic, p))
        .collect();
    Ok(list(
        "KafkaPartitionList",
        api.url(&format!("/topics/{topic}/partitions")),
        data,
    ))
}

pub(super) async fn partition(
    State(api): State<Arc<Api>>,
    Params((cluster, topic, partition)): Params<(String, String, String)>,
    caller: Option<axum::Extension<super::Caller>>,
) -> Result<Json<Value>, ApiError> {
    api.check_cluster(&cluster)?;
    api.allow(&caller, op::DESCRIBE, resource::TOPIC, &topic)?;
    let (_, p) = api.partition(&topic, &partition).await?;
    Ok(Json(partition_json(&api, &topic, p)))
}

pub(super) async fn get_offsets(
    State(api): State<Arc<Api>>,
    Params((cluster, group)): Params<(String, String)>,
    caller: Option<axum::Extension<super::Caller>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    api.check_cluster(&cluster)?;
    api.allow(&caller, op::DESCRIBE, resource::GROUP, &group)?;
    let mut only = None;
    for (k, v) in query_params(query.as_deref()) {
        match k {
            "topic" => only = Some(v.to_string()),
            _ => return Err(ApiError::bad_request(format!("unknown parameter {k:?}"))),
        }
    }
    let offsets = api
        .offsets
        .fetch(&group)
        .await
        .map_err(|e| ApiError::unavailable(format!("reading offsets: {e}")))?;
    let data: Vec<Value> = offsets
        .iter()
        .filter(|(t, _)| only.as_deref().is_none_or(|o| o == t.as_str()))
        .filter(|(t, _)| api.may(&caller, op::DESCRIBE, resource::TOPIC, t))
        .flat_map(|(t, ps)| {
            ps.iter().map(move |(p, c)| {
                json!({"topic_name": t, "partition_id": p, "offset": c.offset, "metadata": c.metadata})
            })
        })
        .collect();
    Ok(Json(
        json!({"cluster_id": api.cluster_id, "group_id": group, "data": data}),
    ))
}

#[derive(Deserialize)]
struct CommitBody {
    offsets: Vec<CommitOffset>,
}

#[derive(Deserialize)]
struct CommitOffset {
    topic_name: String,
    partition_id: i32,
    offset: i64,
    metadata: Option<String>,
}

/// Offsets in one HTTP commit at most (one metadata transaction).
const MAX_COMMIT_OFFSETS: usize = 99;

pub(super) async fn commit_offsets(
    State(api): State<Arc<Api>>,
    Params((cluster, group)): Params<(String, String)>,
    caller: Option<axum::Extension<super::Caller>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    api.check_cluster(&cluster)?;
    api.allow(&caller, op::READ, resource::GROUP, &group)?;
    if group.is_empty() {
        return Err(ApiError::bad_request("the group id is empty"));
    }
    let (body, _held) = api.read_body(body).await?;
    let req: CommitBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid offsets: {e}")))?;
    if req.offsets.is_empty() || req.offsets.len() > MAX_COMMIT_OFFSETS {
        return Err(ApiError::bad_request(format!(
            "give 1 to {MAX_COMMIT_OFFSETS} offsets"
        )));
    }
    let now = api.clock.now_ms();
    let mut offsets = Vec::with_capacity(req.offsets.len());
    let mut seen = std::collections::BTreeSet::new();
    for o in &req.offsets {
        api.allow(&caller, op::READ, resource::TOPIC, &o.topic_name)?;
    }
    for o in &req.offsets {
        if !seen.insert((o.topic_name.as_str(), o.partition_id)) {
            return Err(ApiError::bad_request(format!(
                "{}-{} is listed twice",
                o.topic_name, o.partition_id
            )));
        }
        let t = api.topic(&o.topic_name).await?;
        if o.partition_id < 0 || o.partition_id as usize >= t.partitions {
            return Err(super::unknown_partition(&o.topic_name, o.partition_id));
        }
        if o.offset < 0 {
            return Err(ApiError::bad_request(format!(
                "offset {} of {}-{}: must be at least 0",
                o.offset, o.topic_name, o.partition_id
            )));
        }
        if o.metadata.as_ref().map_or(0, |m| m.len()) > api.limits.offset_metadata_max_bytes {
            return Err(ApiError::bad_request(format!(
                "metadata above offset_metadata_max_bytes ({})",
                api.limits.offset_metadata_max_bytes
            )));
        }
        offsets.push((
            o.topic_name.clone(),
            o.partition_id,
            Committed {
                offset: o.offset,
                leader_epoch: -1,
                metadata: o.metadata.clone(),
                commit_time: now,
            },
        ));
    }
    let has_members = |state: &[u8]| {
        crate::group::persist::Snapshot::decode(state).is_none_or(|s| s.has_members())
    };
    match api
        .offsets
        .commit_standalone(&group, &offsets, has_members)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                40901,
                format!(
                    "group {group:?} has Kafka members (or they were changing as this commit was made): only they commit its offsets"
                ),
            ))
        }
        Err(e) => return Err(ApiError::unavailable(format!("committing offsets: {e}"))),
    }
    let data: Vec<Value> = req
        .offsets
        .iter()
        .map(|o| json!({"topic_name": o.topic_name, "partition_id": o.partition_id, "offset": o.offset, "metadata": o.metadata}))
        .collect();
    Ok(Json(
        json!({"cluster_id": api.cluster_id, "group_id": group, "data": data}),
    ))
}
