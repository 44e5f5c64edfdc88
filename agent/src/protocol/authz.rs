//! Kafka's authorization of each API, around the handlers: the items a
//! principal may not touch are taken out of the request and answered with
//! Kafka's error (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
//! CLUSTER_AUTHORIZATION_FAILED); the handler sees only the rest. Without
//! the authorizer every check passes and requests go through untouched.
//!
//! Operations are Kafka's (`kafka.security.authorizer.AclAuthorizer`'s
//! table): Produce WRITE topic; Fetch READ topic; Metadata, ListOffsets,
//! OffsetForLeaderEpoch DESCRIBE topic; CreateTopics CREATE cluster or
//! topic; DeleteTopics, DeleteRecords DELETE topic; CreatePartitions ALTER
//! topic; Describe/AlterConfigs DESCRIBE_CONFIGS/ALTER_CONFIGS on the
//! topic or the cluster; group APIs READ group (FindCoordinator and
//! DescribeGroups DESCRIBE, DeleteGroups DELETE); OffsetCommit READ group
//! and topic; OffsetFetch DESCRIBE group and topic; OffsetDelete DELETE
//! group and READ topic; ListGroups DESCRIBE cluster or per group;
//! DescribeCluster DESCRIBE cluster; InitProducerId IDEMPOTENT_WRITE
//! cluster or WRITE on some topic; ACL and SCRAM APIs ALTER/DESCRIBE
//! cluster.

use kafka_protocol::{
    messages::{
        alter_configs_response::AlterConfigsResourceResponse,
        create_partitions_response::CreatePartitionsTopicResult,
        create_topics_response::CreatableTopicResult,
        delete_groups_response::DeletableGroupResult,
        delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
        delete_topics_response::DeletableTopicResult,
        describe_configs_response::DescribeConfigsResult,
        describe_groups_response::DescribedGroup,
        incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult,
        list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
        offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult},
        AlterConfigsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest,
        DeleteRecordsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
        IncrementalAlterConfigsRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest,
    },
    protocol::StrBytes,
};

use super::Conn;
use crate::{
    broker::Broker,
    error::ErrorKind,
    security::acl::{op, permission, resource},
};

const TOPIC_DENIED: ErrorKind = ErrorKind::TopicAuthorizationFailed;
const GROUP_DENIED: ErrorKind = ErrorKind::GroupAuthorizationFailed;
const CLUSTER_DENIED: ErrorKind = ErrorKind::ClusterAuthorizationFailed;

/// Kafka's config resource types.
const CONFIG_TOPIC: i8 = 2;
const CONFIG_BROKER: i8 = 4;

fn message(kind: ErrorKind) -> Option<StrBytes> {
    Some(StrBytes::from_static_str(match kind {
        ErrorKind::TopicAuthorizationFailed => "Topic authorization failed.",
        ErrorKind::GroupAuthorizationFailed => "Group authorization failed.",
        _ => "Cluster authorization failed.",
    }))
}

/// Takes out of `items` those `check` refuses; their answers, made by
/// `deny`.
fn split<T, R>(
    items: &mut Vec<T>,
    check: impl Fn(&T) -> Result<(), ErrorKind>,
    deny: impl Fn(T, ErrorKind) -> R,
) -> Vec<R> {
    let mut denied = Vec::new();
    for item in std::mem::take(items) {
        match check(&item) {
            Ok(()) => items.push(item),
            Err(kind) => denied.push(deny(item, kind)),
        }
    }
    denied
}

/// A check that `operation` on the group `name` is allowed.
fn group_check(b: &Broker, c: &Conn, operation: i8, name: &str) -> Result<(), ErrorKind> {
    if c.can_group(b, operation, name) {
        Ok(())
    } else {
        Err(GROUP_DENIED)
    }
}

/// A check that `operation` on the topic `name` is allowed.
fn topic_check(b: &Broker, c: &Conn, operation: i8, name: &str) -> Result<(), ErrorKind> {
    if c.can_topic(b, operation, name) {
        Ok(())
    } else {
        Err(TOPIC_DENIED)
    }
}

pub fn create_topics(
    b: &Broker,
    c: &Conn,
    req: &mut CreateTopicsRequest,
) -> Vec<CreatableTopicResult> {
    if c.can_cluster(b, op::CREATE) {
        return Vec::new();
    }
    split(
        &mut req.topics,
        |t| topic_check(b, c, op::CREATE, t.name.0.as_str()),
        |t, _| {
            CreatableTopicResult::default()
                .with_name(t.name)
                .with_error_code(TOPIC_DENIED.code())
                .with_error_message(message(TOPIC_DENIED))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        },
    )
}

pub fn delete_topics(
    b: &Broker,
    c: &Conn,
    req: &mut DeleteTopicsRequest,
) -> Vec<DeletableTopicResult> {
    let mut denied = Vec::new();
    let names = std::mem::take(&mut req.topic_names);
    for n in names {
        if c.can_topic(b, op::DELETE, n.0.as_str()) {
            req.topic_names.push(n);
        } else {
            denied.push(
                DeletableTopicResult::default()
                    .with_name(Some(n))
                    .with_error_code(TOPIC_DENIED.code())
                    .with_error_message(message(TOPIC_DENIED)),
            );
        }
    }
    let states = std::mem::take(&mut req.topics);
    for t in states {
        // By id: the name, if the id is known, decides.
        let name = t.name.as_ref().map(|n| n.0.to_string()).or_else(|| {
            b.topics
                .list()
                .into_iter()
                .find(|(_, i)| i.id.0 == *t.topic_id.as_bytes())
                .map(|(n, _)| n)
        });
        match name {
            Some(n) if !c.can_topic(b, op::DELETE, &n) => denied.push(
                DeletableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(TOPIC_DENIED.code())
                    .with_error_message(message(TOPIC_DENIED)),
            ),
            _ => req.topics.push(t),
        }
    }
    denied
}

pub fn create_partitions(
    b: &Broker,
    c: &Conn,
    req: &mut CreatePartitionsRequest,
) -> Vec<CreatePartitionsTopicResult> {
    split(
        &mut req.topics,
        |t| topic_check(b, c, op::ALTER, t.name.0.as_str()),
        |t, _| {
            CreatePartitionsTopicResult::default()
                .with_name(t.name)
                .with_error_code(TOPIC_DENIED.code())
                .with_error_message(message(TOPIC_DENIED))
        },
    )
}

pub fn delete_records(
    b: &Broker,
    c: &Conn,
    req: &mut DeleteRecordsRequest,
) -> Vec<DeleteRecordsTopicResult> {
    split(
        &mut req.topics,
        |t| topic_check(b, c, op::DELETE, t.name.0.as_str()),
        |t, _| {
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(TOPIC_DENIED.code())
                        })
                        .collect(),
                )
        },
    )
}

pub fn list_offsets(
    b: &Broker,
    c: &Conn,
    req: &mut ListOffsetsRequest,
) -> Vec<ListOffsetsTopicResponse> {
    split(
        &mut req.topics,
        |t| topic_check(b, c, op::DESCRIBE, t.name.0.as_str()),
        |t, _| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(TOPIC_DENIED.code())
                                .with_timestamp(-1)
                                .with_offset(-1)
                        })
                        .collect(),
                )
        },
    )
}

pub fn offset_for_leader_epoch(
    b: &Broker,
    c: &Conn,
    req: &mut OffsetForLeaderEpochRequest,
) -> Vec<OffsetForLeaderTopicResult> {
    split(
        &mut req.topics,
        |t| topic_check(b, c, op::DESCRIBE, t.topic.0.as_str()),
        |t, _| {
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            EpochEndOffset::default()
                                .with_partition(p.partition)
                                .with_error_code(TOPIC_DENIED.code())
                                .with_leader_epoch(-1)
                                .with_end_offset(-1)
                        })
                        .collect(),
                )
        },
    )
}

/// The check for one config resource, and its error.
fn config_allowed(
    b: &Broker,
    c: &Conn,
    resource_type: i8,
    name: &str,
    operation: i8,
) -> Result<(), ErrorKind> {
    match resource_type {
        CONFIG_TOPIC if c.can_topic(b, operation, name) => Ok(()),
        CONFIG_TOPIC => Err(TOPIC_DENIED),
        CONFIG_BROKER if c.can_cluster(b, operation) => Ok(()),
        CONFIG_BROKER => Err(CLUSTER_DENIED),
        // Unknown types: the handler answers them.
        _ => Ok(()),
    }
}

pub fn describe_configs(
    b: &Broker,
    c: &Conn,
    req: &mut DescribeConfigsRequest,
) -> Vec<DescribeConfigsResult> {
    split(
        &mut req.resources,
        |r| {
            config_allowed(
                b,
                c,
                r.resource_type,
                r.resource_name.as_str(),
                op::DESCRIBE_CONFIGS,
            )
        },
        |r, kind| {
            DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(kind.code())
                .with_error_message(message(kind))
        },
    )
}

pub fn alter_configs(
    b: &Broker,
    c: &Conn,
    req: &mut AlterConfigsRequest,
) -> Vec<AlterConfigsResourceResponse> {
    split(
        &mut req.resources,
        |r| {
            config_allowed(
                b,
                c,
                r.resource_type,
                r.resource_name.as_str(),
                op::ALTER_CONFIGS,
            )
        },
        |r, kind| {
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(kind.code())
                .with_error_message(message(kind))
        },
    )
}

pub fn incremental_alter_configs(
    b: &Broker,
    c: &Conn,
    req: &mut IncrementalAlterConfigsRequest,
) -> Vec<IncrementalResult> {
    split(
        &mut req.resources,
        |r| {
            config_allowed(
                b,
                c,
                r.resource_type,
                r.resource_name.as_str(),
                op::ALTER_CONFIGS,
            )
        },
        |r, kind| {
            IncrementalResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(kind.code())
                .with_error_message(message(kind))
        },
    )
}

pub fn delete_groups(
    b: &Broker,
    c: &Conn,
    req: &mut DeleteGroupsRequest,
) -> Vec<DeletableGroupResult> {
    split(
        &mut req.groups_names,
        |g| group_check(b, c, op::DELETE, g.0.as_str()),
        |g, _| {
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(GROUP_DENIED.code())
        },
    )
}

pub fn describe_groups(
    b: &Broker,
    c: &Conn,
    req: &mut DescribeGroupsRequest,
) -> Vec<DescribedGroup> {
    split(
        &mut req.groups,
        |g| group_check(b, c, op::DESCRIBE, g.0.as_str()),
        |g, _| {
            DescribedGroup::default()
                .with_group_id(g)
                .with_error_code(GROUP_DENIED.code())
                .with_error_message(message(GROUP_DENIED))
        },
    )
}

/// InitProducerId without a transactional id: IDEMPOTENT_WRITE on the
/// cluster, or WRITE on any topic (Kafka 3.0's KIP-679 rule).
pub fn may_init_producer_id(b: &Broker, c: &Conn) -> bool {
    if !b.security.acls_enabled || c.can_cluster(b, op::IDEMPOTENT_WRITE) {
        return true;
    }
    if b.security.policy.super_users.contains(&c.principal) {
        return true;
    }
    let acls = b.security.store.acls();
    let writes_some_topic = acls.iter().any(|a| {
        a.resource_type == resource::TOPIC
            && a.permission == permission::ALLOW
            && matches!(a.operation, op::WRITE | op::ALL)
            && (a.principal == c.principal || a.principal == "User:*")
            && (a.host == c.host || a.host == "*")
    });
    // A topic it may write, by that ACL, that no DENY takes away: checked
    // for the ACL's own name where it is literal.
    writes_some_topic
        && acls.iter().any(|a| {
            a.resource_type == resource::TOPIC
                && a.permission == permission::ALLOW
                && matches!(a.operation, op::WRITE | op::ALL)
                && (a.principal == c.principal || a.principal == "User:*")
                && c.can_topic(b, op::WRITE, &a.resource_name)
        })
}
