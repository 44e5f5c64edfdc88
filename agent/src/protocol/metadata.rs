use kafka_protocol::{
    messages::{
        metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        },
        BrokerId, MetadataRequest, MetadataResponse, TopicName,
    },
    protocol::StrBytes,
};
use silt_coordinator::{
    membership::{client_zone, rendezvous},
    AgentInfo,
};
use uuid::Uuid;

use crate::{
    broker::Broker,
    error::{Classify, ErrorKind},
    protocol::Conn,
    security::acl::op,
    topics::validate_topic_name,
};

/// Partitions with their "leader": any agent accepts any write, so the
/// leader only spreads clients over the live agents (rendezvous hashing,
/// in the client's zone when it names one).
fn partitions(
    agents: &[AgentInfo],
    zone: Option<&str>,
    id: &silt_coordinator::TopicId,
    n: usize,
) -> Vec<MetadataResponsePartition> {
    (0..n as i32)
        .map(|i| {
            let mut key = id.0.to_vec();
            key.extend_from_slice(&i.to_be_bytes());
            let leader = rendezvous(agents, &key, zone).map_or(-1, |a| a.node_id);
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(leader)])
                .with_isr_nodes(vec![BrokerId(leader)])
        })
        .collect()
}

/// The agents partitions are spread over: the live ones (all brokers
/// listed if none is live).
pub(crate) fn leader_candidates(broker: &Broker, listed: &[AgentInfo]) -> Vec<AgentInfo> {
    let live = broker.membership.live();
    if live.is_empty() {
        listed.to_vec()
    } else {
        live
    }
}

/// The leader Metadata names for a partition to a client without a zone.
pub(crate) fn default_leader(
    agents: &[AgentInfo],
    id: &silt_coordinator::TopicId,
    partition: i32,
) -> i32 {
    let mut key = id.0.to_vec();
    key.extend_from_slice(&partition.to_be_bytes());
    rendezvous(agents, &key, None).map_or(-1, |a| a.node_id)
}

/// Kafka's Metadata rules under the authorizer: listing all topics shows
/// only those the principal may DESCRIBE; a named topic it may not is
/// TOPIC_AUTHORIZATION_FAILED (whether or not it exists); auto-creation
/// needs CREATE on the cluster or the topic.
pub async fn handle(
    broker: &Broker,
    req: MetadataRequest,
    version: i16,
    client_id: Option<&str>,
    conn: &Conn,
) -> MetadataResponse {
    // Brokers: live agents and recently seen ones (a broker that flickers
    // out of Metadata makes clients resend its in-flight requests).
    // Leaders: live agents only (all brokers if none is live).
    let listed = broker.membership.brokers();
    let agents = leader_candidates(broker, &listed);
    let zone = client_zone(client_id);
    let brokers = listed
        .iter()
        .map(|a| {
            let (host, port) = a.address(conn.listener.name());
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(a.node_id))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(port)
                .with_rack(a.zone.clone().map(StrBytes::from_string))
        })
        .collect();
    // v0: an empty list means all topics; v1+: null means all.
    // v10+ may name a topic by id alone (the consumer group protocol's
    // assignments carry ids): such entries are answered by id.
    let mut by_id: Vec<Uuid> = Vec::new();
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| {
                    if t.name.is_none() && !t.topic_id.is_nil() {
                        by_id.push(t.topic_id);
                    }
                    t.name.map(|n| n.0.to_string())
                })
                .collect(),
        ),
    };
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let topics = match requested {
        None => broker
            .topics
            .list()
            .into_iter()
            .filter(|(name, _)| conn.can_topic(broker, op::DESCRIBE, name))
            .map(|(name, t)| {
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_topic_id(Uuid::from_bytes(t.id.0))
                    .with_partitions(partitions(&agents, zone, &t.id, t.partitions))
            })
            .collect(),
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                let topic = MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
                if let Err(e) = validate_topic_name(&name) {
                    out.push(topic.with_error_code(e.code()));
                    continue;
                }
                if !conn.can_topic(broker, op::DESCRIBE, &name) {
                    out.push(topic.with_error_code(ErrorKind::TopicAuthorizationFailed.code()));
                    continue;
                }
                let may_create = allow_create
                    && (conn.can_cluster(broker, op::CREATE)
                        || conn.can_topic(broker, op::CREATE, &name));
                out.push(match broker.topics.resolve(&name, may_create).await {
                    Some(t) => topic
                        .with_topic_id(Uuid::from_bytes(t.id.0))
                        .with_partitions(partitions(&agents, zone, &t.id, t.partitions)),
                    // Kafka: a topic the principal would have created,
                    // had it been allowed to.
                    None if allow_create && !may_create => {
                        topic.with_error_code(ErrorKind::TopicAuthorizationFailed.code())
                    }
                    None => topic.with_error_code(ErrorKind::UnknownTopicOrPartition.code()),
                });
            }
            for id in by_id {
                let topic = MetadataResponseTopic::default().with_topic_id(id);
                let name = broker
                    .topics
                    .name_of(&silt_coordinator::TopicId(id.into_bytes()))
                    .filter(|n| conn.can_topic(broker, op::DESCRIBE, n));
                let info = name.as_ref().and_then(|n| broker.topics.get(n));
                out.push(match (name, info) {
                    (Some(name), Some(t)) => topic
                        .with_name(Some(TopicName(StrBytes::from_string(name))))
                        .with_partitions(partitions(&agents, zone, &t.id, t.partitions)),
                    _ => topic.with_error_code(ErrorKind::UnknownTopicId.code()),
                });
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(
            agents.first().map_or(broker.node_id, |a| a.node_id),
        ))
        .with_topics(topics)
}
