//! Consumer-group APIs: coordinator lookup, membership, committed offsets.

use std::time::Duration;

use kafka_protocol::{
    messages::{
        delete_groups_response::DeletableGroupResult,
        describe_groups_response::{DescribedGroup, DescribedGroupMember},
        find_coordinator_response::Coordinator,
        join_group_response::JoinGroupResponseMember,
        leave_group_response::MemberResponse,
        list_groups_response::ListedGroup,
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic},
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        },
        BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
        DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
        HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
        LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
        OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
        OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
    },
    protocol::StrBytes,
};
use silt_coordinator::{offsets::OffsetError, Committed};

use crate::{
    broker::Broker,
    error::{Classify, ErrorKind},
    group::{result_code, GroupError, JoinRequest},
};

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// NOT_COORDINATOR unless this agent coordinates the group (and holds its
/// claim); an empty group id is INVALID_GROUP_ID.
pub(crate) async fn coordinating(broker: &Broker, group: &str) -> Result<(), GroupError> {
    if group.is_empty() {
        Err(GroupError::InvalidGroupId)
    } else if broker.is_group_coordinator(group) {
        broker.claim_group(group).await?;
        broker.load_group(group).await;
        Ok(())
    } else {
        Err(GroupError::NotCoordinator)
    }
}

fn known_partition(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker
        .topics
        .get(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions)
}

/// Why one partition of an offset commit is refused, if it is.
fn refused_commit(
    broker: &Broker,
    topic: &str,
    p: &kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition,
) -> Option<ErrorKind> {
    if !known_partition(broker, topic, p.partition_index) {
        return Some(ErrorKind::UnknownTopicOrPartition);
    }
    let metadata = p.committed_metadata.as_ref().map_or(0, |m| m.len());
    (metadata > broker.settings.offset_metadata_max_bytes)
        .then_some(ErrorKind::OffsetMetadataTooLarge)
}

pub async fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let answers: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let c = Coordinator::default().with_key(s(key.clone()));
            let coordinator = match req.key_type {
                0 => broker.group_coordinator(&key),
                1 => broker.txn_coordinator(&key),
                other => {
                    return c
                        .with_node_id(BrokerId(-1))
                        .with_error_code(ErrorKind::InvalidRequest.code())
                        .with_error_message(Some(s(format!("unknown key type {other}"))))
                }
            };
            match coordinator {
                Some(a) => c
                    .with_node_id(BrokerId(a.node_id))
                    .with_host(s(a.host))
                    .with_port(a.port),
                None => c
                    .with_node_id(BrokerId(-1))
                    .with_error_code(ErrorKind::CoordinatorUnavailable.code()),
            }
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(answers);
    }
    let a = answers.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(a.error_code)
        .with_error_message(if version >= 1 { a.error_message } else { None })
        .with_node_id(a.node_id)
        .with_host(a.host)
        .with_port(a.port)
}

pub async fn join(
    broker: &Broker,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    host: &str,
) -> JoinGroupResponse {
    let group = req.group_id.0.to_string();
    if let Err(e) = coordinating(broker, &group).await {
        return JoinGroupResponse::default()
            .with_error_code(e.code())
            .with_member_id(req.member_id);
    }
    let rebalance = if version >= 1 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    };
    let r = broker
        .groups
        .join(
            &group,
            JoinRequest {
                member_id: req.member_id.to_string(),
                instance_id: req.group_instance_id.map(|i| i.to_string()),
                require_known_member_id: version >= 4,
                client_id: client_id.to_string(),
                client_host: host.to_string(),
                session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
                rebalance_timeout: Duration::from_millis(rebalance.max(0) as u64),
                protocol_type: req.protocol_type.to_string(),
                protocols: req
                    .protocols
                    .iter()
                    .map(|p| (p.name.to_string(), p.metadata.clone()))
                    .collect(),
            },
        )
        .await;
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_generation_id(if r.error.is_none() { r.generation } else { -1 })
        .with_protocol_name(r.protocol.map(s))
        .with_leader(s(r.leader))
        .with_member_id(s(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, meta)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(id))
                        .with_group_instance_id(if version >= 5 { instance.map(s) } else { None })
                        .with_metadata(meta)
                })
                .collect(),
        );
    if version >= 7 {
        resp = resp.with_protocol_type(r.protocol_type.map(s));
    }
    resp
}

pub async fn sync(broker: &Broker, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let group = req.group_id.0.to_string();
    if let Err(e) = coordinating(broker, &group).await {
        return SyncGroupResponse::default().with_error_code(e.code());
    }
    let r = broker
        .groups
        .sync(
            &group,
            &req.member_id,
            req.generation_id,
            req.group_instance_id.as_deref(),
            req.assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        )
        .await;
    let mut error = r.error;
    // Members hold their assignment from here on: the persisted state says
    // so before they learn it (commits from outside the group are refused
    // by it); if it cannot be written, the member retries.
    if error.is_none() && broker.persist_groups().await.contains(&group) {
        error = Some(GroupError::CoordinatorUnavailable);
    }
    let mut resp = SyncGroupResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_assignment(r.assignment);
    if version >= 5 {
        resp = resp
            .with_protocol_type(r.protocol_type.map(s))
            .with_protocol_name(r.protocol.map(s));
    }
    resp
}

pub async fn heartbeat(broker: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    let group = req.group_id.0.to_string();
    let r = coordinating(broker, &group).await.and_then(|()| {
        broker.groups.heartbeat(
            &group,
            &req.member_id,
            req.generation_id,
            req.group_instance_id.as_deref(),
        )
    });
    HeartbeatResponse::default().with_error_code(result_code(r))
}

pub async fn leave(broker: &Broker, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = req.group_id.0.to_string();
    if let Err(e) = coordinating(broker, &group).await {
        return LeaveGroupResponse::default().with_error_code(e.code());
    }
    if version < 3 {
        let r = broker
            .groups
            .leave(&group, &[(req.member_id.to_string(), None)])[0];
        broker.persist_groups().await;
        return LeaveGroupResponse::default().with_error_code(result_code(r));
    }
    let members: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|i| i.to_string()),
            )
        })
        .collect();
    let errors = broker.groups.leave(&group, &members);
    broker.persist_groups().await;
    LeaveGroupResponse::default().with_members(
        req.members
            .into_iter()
            .zip(errors)
            .map(|(m, e)| {
                MemberResponse::default()
                    .with_member_id(m.member_id)
                    .with_group_instance_id(m.group_instance_id)
                    .with_error_code(result_code(e))
            })
            .collect(),
    )
}

pub async fn offset_commit(broker: &Broker, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let checked = coordinating(broker, &group).await.and_then(|()| {
        broker.groups.check_commit(
            &group,
            &req.member_id,
            req.generation_id_or_member_epoch,
            req.group_instance_id.as_deref(),
        )
    });
    // Partitions whose offsets were not written (the store failed partway,
    // or another agent coordinates the group now).
    let mut unwritten = std::collections::BTreeSet::new();
    let mut fenced = false;
    if checked.is_ok() {
        let now = broker.clock.now_ms();
        let offsets: Vec<_> = req
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(|(t, p)| refused_commit(broker, t.name.0.as_str(), p).is_none())
            .map(|(t, p)| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_time: now,
                    },
                )
            })
            .collect();
        match broker
            .offsets
            .commit(&group, Some(&broker.token), &offsets)
            .await
        {
            Ok(()) => {}
            Err((written, OffsetError::Fenced)) => {
                broker.lose_group(&group);
                fenced = true;
                unwritten.extend(offsets[written..].iter().map(|(t, p, _)| (t.clone(), *p)));
            }
            Err((written, e)) => {
                tracing::warn!(group = %group, error = %e, written, "committing offsets failed");
                unwritten.extend(offsets[written..].iter().map(|(t, p, _)| (t.clone(), *p)));
            }
        }
    }
    OffsetCommitResponse::default().with_topics(
        req.topics
            .into_iter()
            .map(|t| {
                let partitions =
                    t.partitions
                        .iter()
                        .map(|p| {
                            let code = match checked {
                                Err(e) => e.code(),
                                Ok(())
                                    if unwritten
                                        .contains(&(t.name.0.to_string(), p.partition_index)) =>
                                {
                                    if fenced {
                                        GroupError::NotCoordinator.code()
                                    } else {
                                        GroupError::CoordinatorUnavailable.code()
                                    }
                                }
                                Ok(()) => refused_commit(broker, t.name.0.as_str(), p)
                                    .map_or(0, |k| k.code()),
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

/// (topic, partitions) the request asks for; `None` means all committed.
type Wanted = Option<Vec<(TopicName, Vec<i32>)>>;

async fn fetch_group(
    broker: &Broker,
    group: &str,
    wanted: Wanted,
    member: Option<(&str, i32)>,
) -> Result<Vec<(TopicName, Vec<(i32, i64, i32, Option<String>)>)>, GroupError> {
    coordinating(broker, group).await?;
    // v9: a member of a consumer-protocol group fetches at its epoch.
    if let Some((member_id, epoch)) = member {
        broker.groups.check_fetch(group, member_id, epoch)?;
    }
    let committed = broker
        .offsets
        .fetch(group)
        .await
        .map_err(|_| GroupError::CoordinatorUnavailable)?;
    let answer = |c: Option<&Committed>, p: i32| match c {
        Some(c) => (p, c.offset, c.leader_epoch, c.metadata.clone()),
        None => (p, -1, -1, None),
    };
    Ok(match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(name, parts)| {
                let ct = committed.get(name.0.as_str());
                let parts = parts
                    .into_iter()
                    .map(|p| answer(ct.and_then(|m| m.get(&p)), p))
                    .collect();
                (name, parts)
            })
            .collect(),
        None => committed
            .into_iter()
            .map(|(t, parts)| {
                let parts = parts.iter().map(|(p, c)| answer(Some(c), *p)).collect();
                (TopicName(s(t)), parts)
            })
            .collect(),
    })
}

pub async fn offset_fetch(
    broker: &Broker,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    // require_stable (v7+): a partition whose offsets are pending in an
    // open transaction answers UNSTABLE_OFFSET_COMMIT (retriable) rather
    // than the offset the transaction is about to replace.
    if req.require_stable {
        broker.read.catch_up().await;
    }
    let unstable = |group: &str| {
        if req.require_stable {
            broker.log.state().pending_txn_offsets(group)
        } else {
            Default::default()
        }
    };
    let unstable_code = ErrorKind::UnstableOffsetCommit.code();
    if version >= 8 {
        let mut groups = Vec::new();
        for g in req.groups {
            let pending = unstable(g.group_id.0.as_str());
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            let member = g.member_id.as_deref().map(|m| (m, g.member_epoch));
            groups.push(
                match fetch_group(broker, g.group_id.0.as_str(), wanted, member).await {
                    Err(e) => group.with_error_code(e.code()),
                    Ok(topics) => group.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, parts)| {
                                let topic = name.0.to_string();
                                OffsetFetchResponseTopics::default()
                                    .with_name(name)
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, o, e, m)| {
                                                let r = OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p);
                                                if pending.contains(&(topic.clone(), p)) {
                                                    return r
                                                        .with_committed_offset(-1)
                                                        .with_error_code(unstable_code);
                                                }
                                                r.with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(m.map(s))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                },
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    match fetch_group(broker, req.group_id.0.as_str(), wanted.clone(), None).await {
        // v0-1 have no top-level error: Kafka puts it on every partition
        // asked for (an empty answer would read as "nothing committed").
        Err(e) if version < 2 => OffsetFetchResponse::default().with_topics(
            wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_error_code(e.code())
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(e) => OffsetFetchResponse::default().with_error_code(e.code()),
        Ok(topics) => {
            let pending = unstable(req.group_id.0.as_str());
            OffsetFetchResponse::default().with_topics(
                topics
                    .into_iter()
                    .map(|(name, parts)| {
                        let topic = name.0.to_string();
                        OffsetFetchResponseTopic::default()
                            .with_name(name)
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, o, e, m)| {
                                        if pending.contains(&(topic.clone(), p)) {
                                            return OffsetFetchResponsePartition::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(-1)
                                                .with_error_code(unstable_code);
                                        }
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(if version >= 5 {
                                                e
                                            } else {
                                                -1
                                            })
                                            .with_metadata(m.map(s))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        }
    }
}

pub async fn list_groups(broker: &Broker, req: ListGroupsRequest) -> ListGroupsResponse {
    let mut groups: std::collections::BTreeMap<String, (String, &'static str)> = broker
        .groups
        .list()
        .into_iter()
        .filter(|(id, _, _)| broker.is_group_coordinator(id))
        .map(|(id, pt, st)| (id, (pt, st)))
        .collect();
    if let Ok(committed) = broker.offsets.groups().await {
        for g in committed {
            if broker.is_group_coordinator(&g) {
                groups.entry(g).or_insert(("consumer".to_string(), "Empty"));
            }
        }
    }
    let filter: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    ListGroupsResponse::default().with_groups(
        groups
            .into_iter()
            .filter(|(_, (_, st))| filter.is_empty() || filter.contains(&st.to_lowercase()))
            .map(|(id, (pt, st))| {
                ListedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_protocol_type(s(pt))
                    .with_group_state(s(st))
            })
            .collect(),
    )
}

pub async fn describe_groups(
    broker: &Broker,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut out = Vec::new();
    for g in req.groups {
        let id = g.0.to_string();
        let d = DescribedGroup::default().with_group_id(g);
        if let Err(e) = coordinating(broker, &id).await {
            out.push(d.with_error_code(e.code()));
            continue;
        }
        if broker.groups.is_consumer_group(&id) {
            // As Kafka: DescribeGroups describes classic groups only (the
            // versions served, up to 5, carry no error message).
            out.push(
                d.with_group_state(s("Dead"))
                    .with_error_code(GroupError::GroupIdNotFound.code()),
            );
            continue;
        }
        let described = broker.groups.describe(&id);
        let d = match described {
            Some(x) => d
                .with_group_state(s(x.state))
                .with_protocol_type(s(x.protocol_type))
                .with_protocol_data(s(x.protocol))
                .with_members(
                    x.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(s(m.member_id))
                                .with_group_instance_id(if version >= 4 {
                                    m.instance_id.map(s)
                                } else {
                                    None
                                })
                                .with_client_id(s(m.client_id))
                                .with_client_host(s(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
            None => {
                let has_offsets = broker
                    .offsets
                    .fetch(&id)
                    .await
                    .map(|o| !o.is_empty())
                    .unwrap_or(false);
                if has_offsets {
                    d.with_group_state(s("Empty"))
                        .with_protocol_type(s("consumer"))
                } else {
                    d.with_group_state(s("Dead"))
                }
            }
        };
        out.push(d);
    }
    DescribeGroupsResponse::default().with_groups(out)
}

pub async fn delete_groups(broker: &Broker, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for g in req.groups_names {
        let id = g.0.to_string();
        let r = DeletableGroupResult::default().with_group_id(g);
        let r2 = if let Err(e) = coordinating(broker, &id).await {
            Err(e)
        } else if broker.groups.has_members(&id) {
            Err(GroupError::NonEmptyGroup)
        } else {
            let exists = broker.groups.describe(&id).is_some()
                || broker
                    .offsets
                    .fetch(&id)
                    .await
                    .map(|o| !o.is_empty())
                    .unwrap_or(false);
            if !exists {
                Err(GroupError::GroupIdNotFound)
            } else {
                match broker.offsets.delete_group(&id).await {
                    Ok(()) => {
                        broker.groups.forget(&id);
                        Ok(())
                    }
                    Err(_) => Err(GroupError::CoordinatorUnavailable),
                }
            }
        };
        results.push(r.with_error_code(result_code(r2)));
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_delete(broker: &Broker, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    if let Err(e) = coordinating(broker, &group).await {
        return OffsetDeleteResponse::default().with_error_code(e.code());
    }
    // Offsets of a group with live members may still be in use.
    let busy = broker.groups.has_members(&group);
    let mut targets = Vec::new();
    if !busy {
        for t in &req.topics {
            for p in &t.partitions {
                targets.push((t.name.0.to_string(), p.partition_index));
            }
        }
        if let Err(e) = broker.offsets.delete(&group, &targets).await {
            tracing::warn!(group = %group, error = %e, "deleting offsets failed");
            return OffsetDeleteResponse::default()
                .with_error_code(GroupError::CoordinatorUnavailable.code());
        }
    }
    let pe = if busy {
        GroupError::SubscribedToTopic.code()
    } else {
        0
    };
    OffsetDeleteResponse::default().with_topics(
        req.topics
            .into_iter()
            .map(|t| {
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(
                        t.partitions
                            .into_iter()
                            .map(|p| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(pe)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The consumer group protocol's assignment types carry topic ids: a
/// request's owned partitions by name (ids of unknown topics are dropped).
fn owned_by_name(
    broker: &Broker,
    owned: &[kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions],
) -> crate::group::consumer::Parts {
    let mut out = crate::group::consumer::Parts::new();
    for tp in owned {
        let id = silt_coordinator::TopicId(tp.topic_id.into_bytes());
        if let Some(name) = broker.topics.name_of(&id) {
            out.entry(name)
                .or_default()
                .extend(tp.partitions.iter().copied());
        }
    }
    out
}

/// Partitions by topic name, as (topic id, name, partitions) of topics
/// that exist.
fn with_ids(
    broker: &Broker,
    parts: &crate::group::consumer::Parts,
) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
    parts
        .iter()
        .filter_map(|(t, ps)| {
            let info = broker.topics.get(t)?;
            Some((
                uuid::Uuid::from_bytes(info.id.0),
                t.clone(),
                ps.iter().copied().collect(),
            ))
        })
        .collect()
}

/// A subscription pattern: it matches whole topic names (as Java's
/// `Matcher.matches`), in RE2 syntax as Kafka's RE2/J.
fn topic_pattern(r: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{r})$"))
        .size_limit(1 << 20)
        .build()
}

/// Kafka's checks of a ConsumerGroupHeartbeat before the group is looked at.
fn invalid_heartbeat(
    broker: &Broker,
    req: &kafka_protocol::messages::ConsumerGroupHeartbeatRequest,
) -> Option<(GroupError, String)> {
    use crate::group::consumer::{LEAVE_EPOCH, STATIC_LEAVE_EPOCH};
    let bad = |m: &str| Some((GroupError::InvalidRequest, m.to_string()));
    let blank = |v: &Option<StrBytes>| v.as_ref().is_some_and(|s| s.trim().is_empty());
    if req.group_id.0.trim().is_empty() {
        return bad("GroupId can't be empty.");
    }
    if blank(&req.instance_id) {
        return bad("InstanceId can't be empty.");
    }
    if blank(&req.rack_id) {
        return bad("RackId can't be empty.");
    }
    if let Some(r) = req
        .subscribed_topic_regex
        .as_ref()
        .filter(|r| !r.is_empty())
    {
        if let Err(e) = topic_pattern(r) {
            return Some((
                GroupError::InvalidRegularExpression,
                format!("SubscribedTopicRegex {r} is not valid: {e}"),
            ));
        }
    }
    let epoch = req.member_epoch;
    if epoch > 0 || epoch == LEAVE_EPOCH {
        if req.member_id.trim().is_empty() {
            return bad("MemberId can't be empty.");
        }
    } else if epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return bad("RebalanceTimeoutMs must be provided in first request.");
        }
        if !req.topic_partitions.as_ref().is_some_and(|t| t.is_empty()) {
            return bad("TopicPartitions must be empty when (re-)joining.");
        }
        let names = req
            .subscribed_topic_names
            .as_ref()
            .is_some_and(|t| !t.is_empty());
        let regex = req
            .subscribed_topic_regex
            .as_ref()
            .is_some_and(|r| !r.is_empty());
        if !names && !regex {
            return bad(
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            );
        }
    } else if epoch == STATIC_LEAVE_EPOCH {
        if req.member_id.trim().is_empty() {
            return bad("MemberId can't be empty.");
        }
        if req.instance_id.is_none() {
            return bad("InstanceId can't be null.");
        }
    } else {
        return bad("MemberEpoch is invalid.");
    }
    if let Some(a) = &req.server_assignor {
        let offered = &broker.groups.consumer_limits().assignors;
        if !offered.iter().any(|o| o.name() == a.as_str()) {
            let names: Vec<&str> = offered.iter().map(|o| o.name()).collect();
            return Some((
                GroupError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: {}.",
                    names.join(", ")
                ),
            ));
        }
    }
    None
}

/// ConsumerGroupHeartbeat (KIP-848): join, heartbeat, reconcile, leave.
pub async fn consumer_group_heartbeat(
    broker: &Broker,
    req: kafka_protocol::messages::ConsumerGroupHeartbeatRequest,
    client_id: &str,
    host: &str,
    may_describe: &(dyn Fn(&str) -> bool + Sync),
) -> kafka_protocol::messages::ConsumerGroupHeartbeatResponse {
    use kafka_protocol::messages::{
        consumer_group_heartbeat_response::{Assignment, TopicPartitions},
        ConsumerGroupHeartbeatResponse,
    };
    let fail = |e: GroupError, m: String| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(s(m)))
    };
    if let Some((e, m)) = invalid_heartbeat(broker, &req) {
        return fail(e, m);
    }
    let group = req.group_id.0.to_string();
    if let Err(e) = coordinating(broker, &group).await {
        return fail(e, e.to_string());
    }
    let hb = crate::group::consumer::Heartbeat {
        member_id: req.member_id.to_string(),
        epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|i| i.to_string()),
        rack_id: req.rack_id.as_ref().map(|r| r.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.0.to_string()).collect()),
        regex: req.subscribed_topic_regex.as_ref().map(|r| r.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|a| a.to_string()),
        owned: req
            .topic_partitions
            .as_ref()
            .map(|o| owned_by_name(broker, o)),
        client_id: client_id.to_string(),
        client_host: host.to_string(),
    };
    let answer = {
        let partitions = |t: &str| broker.topics.get(t).map(|i| i.partitions);
        // Topics a pattern matches, among those the principal may describe.
        let matching = |r: &str| match topic_pattern(r) {
            Ok(re) => broker
                .topics
                .list()
                .into_iter()
                .map(|(name, _)| name)
                .filter(|name| re.is_match(name) && may_describe(name))
                .collect(),
            Err(_) => Vec::new(),
        };
        let view = crate::group::consumer::TopicView {
            partitions: &partitions,
            matching: &matching,
        };
        match broker.groups.consumer_heartbeat(&group, &hb, &view) {
            Ok(a) => a,
            Err((e, m)) => return fail(e, m),
        }
    };
    // A member learns a new epoch or assignment only once it is persisted:
    // a coordinator that takes the group over resumes from there.
    if broker.persist_groups().await.contains(&group) {
        return fail(
            GroupError::CoordinatorUnavailable,
            "the group's state could not be stored; retry".into(),
        );
    }
    let interval = broker.groups.consumer_limits().heartbeat_interval;
    ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(s(answer.member_id)))
        .with_member_epoch(answer.epoch)
        .with_heartbeat_interval_ms(interval.as_millis().min(i32::MAX as u128) as i32)
        .with_assignment(answer.assignment.map(|parts| {
            Assignment::default().with_topic_partitions(
                with_ids(broker, &parts)
                    .into_iter()
                    .map(|(id, _, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps)
                    })
                    .collect(),
            )
        }))
}

/// ConsumerGroupDescribe (KIP-848).
pub async fn consumer_group_describe(
    broker: &Broker,
    req: kafka_protocol::messages::ConsumerGroupDescribeRequest,
    version: i16,
) -> kafka_protocol::messages::ConsumerGroupDescribeResponse {
    use kafka_protocol::messages::{
        consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions},
        ConsumerGroupDescribeResponse,
    };
    let assignment = |parts: &crate::group::consumer::Parts| {
        Assignment::default().with_topic_partitions(
            with_ids(broker, parts)
                .into_iter()
                .map(|(id, name, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(s(name)))
                        .with_partitions(ps)
                })
                .collect(),
        )
    };
    let mut out = Vec::new();
    for id in req.group_ids {
        let name = id.0.to_string();
        let d = DescribedGroup::default()
            .with_group_id(id)
            .with_authorized_operations(i32::MIN);
        if let Err(e) = coordinating(broker, &name).await {
            out.push(d.with_error_code(e.code()));
            continue;
        }
        let Some(g) = broker.groups.consumer_group(&name) else {
            let message = if broker.groups.has_members(&name) {
                format!("Group {name} is not a consumer group.")
            } else {
                format!("Group {name} not found.")
            };
            out.push(
                d.with_error_code(GroupError::GroupIdNotFound.code())
                    .with_error_message(Some(s(message))),
            );
            continue;
        };
        let members = g
            .members
            .iter()
            .map(|(mid, m)| {
                let mut member = Member::default()
                    .with_member_id(s(mid.clone()))
                    .with_instance_id(m.instance_id.clone().map(s))
                    .with_rack_id(m.rack_id.clone().map(s))
                    .with_member_epoch(m.epoch)
                    .with_client_id(s(m.client_id.clone()))
                    .with_client_host(s(m.client_host.clone()))
                    .with_subscribed_topic_names(
                        m.subscribed
                            .iter()
                            .map(|t| TopicName(s(t.clone())))
                            .collect(),
                    )
                    .with_assignment(assignment(&m.assigned))
                    .with_target_assignment(assignment(
                        &g.target.get(mid).cloned().unwrap_or_default(),
                    ));
                if version >= 1 {
                    // 1: a member of the consumer protocol.
                    member = member.with_member_type(1);
                }
                member
            })
            .collect();
        out.push(
            d.with_group_state(s(g.state_name()))
                .with_group_epoch(g.epoch)
                .with_assignment_epoch(g.assignment_epoch)
                .with_assignor_name(s(g.assignor.name()))
                .with_members(members),
        );
    }
    ConsumerGroupDescribeResponse::default().with_groups(out)
}
