//! The ACL APIs (CreateAcls, DescribeAcls, DeleteAcls) and the SCRAM
//! credential APIs (DescribeUserScramCredentials,
//! AlterUserScramCredentials), with Kafka's errors: ALTER on the cluster to
//! change, DESCRIBE to read; SECURITY_DISABLED (for ACLs) while the
//! authorizer is off.

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        alter_user_scram_credentials_response::AlterUserScramCredentialsResult,
        create_acls_response::AclCreationResult,
        delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl},
        describe_acls_response::{AclDescription, DescribeAclsResource},
        describe_user_scram_credentials_response::{
            CredentialInfo, DescribeUserScramCredentialsResult,
        },
        AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, CreateAclsRequest,
        CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
        DescribeAclsResponse, DescribeUserScramCredentialsRequest,
        DescribeUserScramCredentialsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::Conn;
use crate::{
    broker::Broker,
    security::{
        acl::{op, AclBinding, AclFilter},
        scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS},
        store::StoreError,
    },
};

fn text(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

const CLUSTER_DENIED: &str = "Cluster authorization failed.";

fn disabled() -> (i16, Option<StrBytes>) {
    (
        ResponseError::SecurityDisabled.code(),
        text("ACLs are off on this cluster (authorizer = none)"),
    )
}

fn store_error(e: &StoreError) -> (i16, Option<StrBytes>) {
    match e {
        StoreError::Limit(m) => (ResponseError::PolicyViolation.code(), text(m.clone())),
        StoreError::Meta(m) => (
            ResponseError::RequestTimedOut.code(),
            text(format!("metadata store: {m}")),
        ),
    }
}

/// Whether the ACL APIs may `operation` (ALTER to change, DESCRIBE to
/// read): the authorizer must be on and the principal allowed on the
/// cluster; else the error code and message to answer.
fn acl_gate(b: &Broker, c: &Conn, operation: i8) -> Result<(), (i16, Option<StrBytes>)> {
    if !b.security.acls_enabled {
        return Err(disabled());
    }
    if !c.can_cluster(b, operation) {
        return Err((
            ResponseError::ClusterAuthorizationFailed.code(),
            text(CLUSTER_DENIED),
        ));
    }
    Ok(())
}

pub async fn create_acls(b: &Broker, c: &Conn, req: CreateAclsRequest) -> CreateAclsResponse {
    let mut results = Vec::with_capacity(req.creations.len());
    for a in req.creations {
        let r = AclCreationResult::default();
        if let Err((code, msg)) = acl_gate(b, c, op::ALTER) {
            results.push(r.with_error_code(code).with_error_message(msg));
            continue;
        }
        let binding = AclBinding {
            resource_type: a.resource_type,
            resource_name: a.resource_name.to_string(),
            pattern_type: a.resource_pattern_type,
            principal: a.principal.to_string(),
            host: a.host.to_string(),
            operation: a.operation,
            permission: a.permission_type,
        };
        if let Some(why) = binding.invalid() {
            results.push(
                r.with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(text(why)),
            );
            continue;
        }
        match b.security.store.create_acl(&binding).await {
            Ok(()) => {
                tracing::info!(principal = %c.principal, acl = ?binding, "ACL created");
                results.push(r);
            }
            Err(e) => {
                let (code, msg) = store_error(&e);
                results.push(r.with_error_code(code).with_error_message(msg));
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> AclFilter {
    AclFilter {
        resource_type,
        resource_name: name.map(|n| n.to_string()),
        pattern_type: pattern,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation,
        permission,
    }
}

pub fn describe_acls(b: &Broker, c: &Conn, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let resp = DescribeAclsResponse::default();
    if let Err((code, msg)) = acl_gate(b, c, op::DESCRIBE) {
        return resp.with_error_code(code).with_error_message(msg);
    }
    let f = filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    );
    if let Some(why) = f.invalid() {
        return resp
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(text(why));
    }
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for a in b.security.store.acls().iter().filter(|a| f.matches(a)) {
        by_resource
            .entry((a.resource_type, a.resource_name.clone(), a.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(a.principal.clone()))
                    .with_host(StrBytes::from_string(a.host.clone()))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission),
            );
    }
    resp.with_resources(
        by_resource
            .into_iter()
            .map(|((rt, name, pt), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(StrBytes::from_string(name))
                    .with_pattern_type(pt)
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub async fn delete_acls(b: &Broker, c: &Conn, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut results = Vec::with_capacity(req.filters.len());
    for f in req.filters {
        let r = DeleteAclsFilterResult::default();
        if let Err((code, msg)) = acl_gate(b, c, op::ALTER) {
            results.push(r.with_error_code(code).with_error_message(msg));
            continue;
        }
        let f = filter(
            f.resource_type_filter,
            f.resource_name_filter.as_ref(),
            f.pattern_type_filter,
            f.principal_filter.as_ref(),
            f.host_filter.as_ref(),
            f.operation,
            f.permission_type,
        );
        if let Some(why) = f.invalid() {
            results.push(
                r.with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(text(why)),
            );
            continue;
        }
        match b.security.store.delete_acls(&f).await {
            Ok(deleted) => {
                tracing::info!(principal = %c.principal, deleted = deleted.len(), "ACLs deleted");
                results.push(
                    r.with_matching_acls(
                        deleted
                            .into_iter()
                            .map(|a| {
                                DeleteAclsMatchingAcl::default()
                                    .with_resource_type(a.resource_type)
                                    .with_resource_name(StrBytes::from_string(a.resource_name))
                                    .with_pattern_type(a.pattern_type)
                                    .with_principal(StrBytes::from_string(a.principal))
                                    .with_host(StrBytes::from_string(a.host))
                                    .with_operation(a.operation)
                                    .with_permission_type(a.permission)
                            })
                            .collect(),
                    ),
                );
            }
            Err(e) => {
                let (code, msg) = store_error(&e);
                results.push(r.with_error_code(code).with_error_message(msg));
            }
        }
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

pub fn describe_scram(
    b: &Broker,
    c: &Conn,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let resp = DescribeUserScramCredentialsResponse::default();
    if !c.can_cluster(b, op::DESCRIBE) {
        return resp
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(text(CLUSTER_DENIED));
    }
    let users = b.security.store.users();
    let info = |v: &Vec<(Mechanism, u32)>| {
        v.iter()
            .map(|(m, i)| {
                CredentialInfo::default()
                    .with_mechanism(m.kafka_type())
                    .with_iterations(*i as i32)
            })
            .collect::<Vec<_>>()
    };
    let results = match req.users {
        None => users
            .iter()
            .map(|(u, v)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(u.clone()))
                    .with_credential_infos(info(v))
            })
            .collect(),
        Some(names) => {
            let mut seen = std::collections::BTreeSet::new();
            names
                .into_iter()
                .map(|n| {
                    let name = n.name.to_string();
                    let r = DescribeUserScramCredentialsResult::default().with_user(n.name);
                    if !seen.insert(name.clone()) {
                        return r
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(text(format!("user {name:?} is listed twice")));
                    }
                    match users.get(&name) {
                        Some(v) => r.with_credential_infos(info(v)),
                        None => r
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(text(format!(
                                "Attempt to describe a user credential that does not exist: {name}"
                            ))),
                    }
                })
                .collect()
        }
    };
    resp.with_results(results)
}

pub async fn alter_scram(
    b: &Broker,
    c: &Conn,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let allowed = c.can_cluster(b, op::ALTER);
    let mut results = Vec::new();
    // Kafka refuses a user named twice in one request, in either list.
    let mut count: BTreeMap<(String, i8), usize> = BTreeMap::new();
    for d in &req.deletions {
        *count.entry((d.name.to_string(), d.mechanism)).or_default() += 1;
    }
    for u in &req.upsertions {
        *count.entry((u.name.to_string(), u.mechanism)).or_default() += 1;
    }
    let result =
        |user: &StrBytes| AlterUserScramCredentialsResult::default().with_user(user.clone());
    for d in &req.deletions {
        let r = result(&d.name);
        let mech = Mechanism::from_kafka_type(d.mechanism);
        let r = if !allowed {
            r.with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                .with_error_message(text(CLUSTER_DENIED))
        } else if count[&(d.name.to_string(), d.mechanism)] > 1 {
            r.with_error_code(ResponseError::DuplicateResource.code())
                .with_error_message(text("a user and mechanism named twice in one request"))
        } else if let Some(m) = mech {
            match b.security.store.delete_credential(d.name.as_str(), m).await {
                Ok(true) => {
                    tracing::info!(principal = %c.principal, user = %d.name, mechanism = m.name(), "SCRAM credential deleted");
                    r
                }
                Ok(false) => r
                    .with_error_code(ResponseError::ResourceNotFound.code())
                    .with_error_message(text(format!(
                        "Attempt to delete a user credential that does not exist: {}",
                        d.name
                    ))),
                Err(e) => {
                    let (code, msg) = store_error(&e);
                    r.with_error_code(code).with_error_message(msg)
                }
            }
        } else {
            r.with_error_code(ResponseError::UnsupportedSaslMechanism.code())
                .with_error_message(text(format!("unknown SCRAM mechanism {}", d.mechanism)))
        };
        results.push(r);
    }
    for u in &req.upsertions {
        let r = result(&u.name);
        let mech = Mechanism::from_kafka_type(u.mechanism);
        let r = if !allowed {
            r.with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                .with_error_message(text(CLUSTER_DENIED))
        } else if count[&(u.name.to_string(), u.mechanism)] > 1 {
            r.with_error_code(ResponseError::DuplicateResource.code())
                .with_error_message(text("a user and mechanism named twice in one request"))
        } else if u.name.is_empty() {
            r.with_error_code(ResponseError::UnacceptableCredential.code())
                .with_error_message(text("the user name is empty"))
        } else if !(MIN_ITERATIONS as i32..=MAX_ITERATIONS as i32).contains(&u.iterations) {
            r.with_error_code(ResponseError::UnacceptableCredential.code())
                .with_error_message(text(format!(
                    "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
                )))
        } else if let Some(m) = mech {
            if u.salted_password.len() != m.output_len() || u.salt.is_empty() || u.salt.len() > 1024
            {
                r.with_error_code(ResponseError::UnacceptableCredential.code())
                    .with_error_message(text(
                        "the salt or the salted password has the wrong length",
                    ))
            } else {
                let cred = Credential::from_salted_password(
                    m,
                    &u.salted_password,
                    &u.salt,
                    u.iterations as u32,
                );
                match b
                    .security
                    .store
                    .put_credential(u.name.as_str(), m, &cred)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(principal = %c.principal, user = %u.name, mechanism = m.name(), "SCRAM credential set");
                        r
                    }
                    Err(e) => {
                        let (code, msg) = store_error(&e);
                        r.with_error_code(code).with_error_message(msg)
                    }
                }
            }
        } else {
            r.with_error_code(ResponseError::UnsupportedSaslMechanism.code())
                .with_error_message(text(format!("unknown SCRAM mechanism {}", u.mechanism)))
        };
        results.push(r);
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}
