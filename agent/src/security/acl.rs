//! Kafka's ACL model and its authorizer rules: bindings of (resource type,
//! name, pattern) to (principal, host, operation, allow/deny), filters for
//! DescribeAcls and DeleteAcls, and the decision for one request.
//!
//! The rules are Kafka's (`AclAuthorizer`/`StandardAuthorizer`): a
//! super user may do anything; a matching DENY wins over any ALLOW; an
//! ALLOW of READ, WRITE, DELETE or ALTER also allows DESCRIBE, and one of
//! ALTER_CONFIGS allows DESCRIBE_CONFIGS; a resource with no ACL at all is
//! open only if `allow_everyone_if_no_acl_found`.

use serde::{Deserialize, Serialize};

/// Kafka's resource types (wire numbers).
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
}

/// Kafka's pattern types.
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's ACL operations.
pub mod op {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
}

/// Kafka's permission types.
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The wildcard of literal resource names, principals and hosts.
pub const WILDCARD: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

impl AclBinding {
    /// Why this binding cannot be stored, in Kafka's words.
    pub fn invalid(&self) -> Option<String> {
        if !matches!(
            self.resource_type,
            resource::TOPIC | resource::GROUP | resource::CLUSTER | resource::TRANSACTIONAL_ID
        ) {
            return Some(format!("invalid resource type {}", self.resource_type));
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Some(format!(
                "invalid pattern type {} (LITERAL or PREFIXED)",
                self.pattern_type
            ));
        }
        if self.resource_name.is_empty() {
            return Some("the resource name is empty".into());
        }
        if self.resource_type == resource::CLUSTER && self.resource_name != CLUSTER_NAME {
            return Some(format!(
                "the cluster resource is named {CLUSTER_NAME:?}, not {:?}",
                self.resource_name
            ));
        }
        if !(op::ALL..=op::IDEMPOTENT_WRITE).contains(&self.operation) {
            return Some(format!("invalid operation {}", self.operation));
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Some(format!("invalid permission type {}", self.permission));
        }
        if !self.principal.starts_with("User:") || self.principal.len() <= 5 {
            return Some(format!(
                "principal {:?} is not of the form User:NAME",
                self.principal
            ));
        }
        if self.host.is_empty() {
            return Some("the host is empty (use * for any host)".into());
        }
        None
    }

    /// Whether this binding's resource pattern covers `name`.
    fn covers(&self, resource_type: i8, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                pattern::LITERAL => self.resource_name == name || self.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&self.resource_name),
                _ => false,
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == host || self.host == WILDCARD)
    }
}

/// A DescribeAcls or DeleteAcls filter (None: any).
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        if self.resource_type != resource::ANY && self.resource_type != b.resource_type {
            return false;
        }
        let name_ok = match (&self.resource_name, self.pattern_type) {
            (None, pattern::ANY | pattern::MATCH) => true,
            (None, p) => p == b.pattern_type,
            (Some(n), pattern::ANY) => &b.resource_name == n,
            (Some(n), pattern::MATCH) => match b.pattern_type {
                pattern::LITERAL => &b.resource_name == n || b.resource_name == WILDCARD,
                pattern::PREFIXED => n.starts_with(&b.resource_name),
                _ => false,
            },
            (Some(n), p) => p == b.pattern_type && &b.resource_name == n,
        };
        name_ok
            && self.principal.as_ref().is_none_or(|p| p == &b.principal)
            && self.host.as_ref().is_none_or(|h| h == &b.host)
            && (self.operation == op::ANY || self.operation == b.operation)
            && (self.permission == permission::ANY || self.permission == b.permission)
    }

    /// Why Kafka would refuse this filter, if it would.
    pub fn invalid(&self) -> Option<String> {
        if self.resource_type < resource::ANY || self.resource_type > 7 {
            return Some(format!("invalid resource type {}", self.resource_type));
        }
        if !(pattern::ANY..=pattern::PREFIXED).contains(&self.pattern_type) {
            return Some(format!("invalid pattern type {}", self.pattern_type));
        }
        if !(op::ANY..=14).contains(&self.operation) {
            return Some(format!("invalid operation {}", self.operation));
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            return Some(format!("invalid permission type {}", self.permission));
        }
        None
    }
}

/// Whether a binding's operation grants `wanted` (ALLOW side).
fn grants(bound: i8, wanted: i8) -> bool {
    bound == op::ALL
        || bound == wanted
        || (wanted == op::DESCRIBE
            && matches!(bound, op::READ | op::WRITE | op::DELETE | op::ALTER))
        || (wanted == op::DESCRIBE_CONFIGS && bound == op::ALTER_CONFIGS)
}

/// The authorizer's settings.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Principals allowed everything (`super_users`, e.g. `User:admin`).
    pub super_users: Vec<String>,
    /// Kafka's `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acl: bool,
}

/// Kafka's decision for `principal` from `host` doing `operation` on the
/// resource.
pub fn authorize(
    acls: &[AclBinding],
    policy: &Policy,
    principal: &str,
    host: &str,
    operation: i8,
    resource_type: i8,
    name: &str,
) -> bool {
    if policy.super_users.iter().any(|s| s == principal) {
        return true;
    }
    let mut any = false;
    let mut allowed = false;
    for b in acls.iter().filter(|b| b.covers(resource_type, name)) {
        any = true;
        if !b.applies_to(principal, host) {
            continue;
        }
        match b.permission {
            permission::DENY if b.operation == op::ALL || b.operation == operation => return false,
            permission::ALLOW if grants(b.operation, operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any && policy.allow_if_no_acl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pt: i8, who: &str, o: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: who.into(),
            host: "*".into(),
            operation: o,
            permission: perm,
        }
    }

    #[test]
    fn kafka_rules() {
        let p = Policy::default();
        let acls = vec![
            acl(
                resource::TOPIC,
                "orders",
                pattern::LITERAL,
                "User:alice",
                op::READ,
                permission::ALLOW,
            ),
            acl(
                resource::TOPIC,
                "logs-",
                pattern::PREFIXED,
                "User:alice",
                op::WRITE,
                permission::ALLOW,
            ),
            acl(
                resource::TOPIC,
                "logs-secret",
                pattern::LITERAL,
                "User:alice",
                op::ALL,
                permission::DENY,
            ),
            acl(
                resource::TOPIC,
                "*",
                pattern::LITERAL,
                "User:*",
                op::DESCRIBE,
                permission::ALLOW,
            ),
            acl(
                resource::GROUP,
                "g",
                pattern::LITERAL,
                "User:bob",
                op::ALL,
                permission::ALLOW,
            ),
        ];
        let can =
            |who: &str, o: i8, rt: i8, n: &str| authorize(&acls, &p, who, "/1.2.3.4", o, rt, n);
        assert!(can("User:alice", op::READ, resource::TOPIC, "orders"));
        assert!(!can("User:alice", op::WRITE, resource::TOPIC, "orders"));
        // READ implies DESCRIBE; the wildcard grants DESCRIBE to everyone.
        assert!(can("User:bob", op::DESCRIBE, resource::TOPIC, "orders"));
        assert!(!can("User:bob", op::READ, resource::TOPIC, "orders"));
        // Prefixed, and a deny that wins over it.
        assert!(can("User:alice", op::WRITE, resource::TOPIC, "logs-app"));
        assert!(!can(
            "User:alice",
            op::WRITE,
            resource::TOPIC,
            "logs-secret"
        ));
        assert!(!can(
            "User:alice",
            op::DESCRIBE,
            resource::TOPIC,
            "logs-secret"
        ));
        // ALL grants every operation of its resource.
        assert!(can("User:bob", op::READ, resource::GROUP, "g"));
        assert!(!can("User:bob", op::READ, resource::GROUP, "h"));
        // No ACL on the resource: closed by default, open if configured.
        assert!(!can(
            "User:bob",
            op::CREATE,
            resource::CLUSTER,
            CLUSTER_NAME
        ));
        let open = Policy {
            allow_if_no_acl: true,
            ..Policy::default()
        };
        assert!(authorize(
            &acls,
            &open,
            "User:bob",
            "h",
            op::CREATE,
            resource::CLUSTER,
            CLUSTER_NAME
        ));
        // ...but a resource with ACLs for others stays closed.
        assert!(!authorize(
            &acls,
            &open,
            "User:carol",
            "h",
            op::READ,
            resource::GROUP,
            "g"
        ));
        let sup = Policy {
            super_users: vec!["User:root".into()],
            ..Policy::default()
        };
        assert!(authorize(
            &acls,
            &sup,
            "User:root",
            "h",
            op::WRITE,
            resource::TOPIC,
            "logs-secret"
        ));
    }

    #[test]
    fn hosts_and_alter_configs() {
        let mut a = acl(
            resource::TOPIC,
            "t",
            pattern::LITERAL,
            "User:a",
            op::ALTER_CONFIGS,
            permission::ALLOW,
        );
        a.host = "10.0.0.1".into();
        let p = Policy::default();
        assert!(authorize(
            &[a.clone()],
            &p,
            "User:a",
            "10.0.0.1",
            op::DESCRIBE_CONFIGS,
            resource::TOPIC,
            "t"
        ));
        assert!(!authorize(
            &[a],
            &p,
            "User:a",
            "10.0.0.2",
            op::DESCRIBE_CONFIGS,
            resource::TOPIC,
            "t"
        ));
    }

    #[test]
    fn filters() {
        let b = acl(
            resource::TOPIC,
            "logs-",
            pattern::PREFIXED,
            "User:a",
            op::WRITE,
            permission::ALLOW,
        );
        let any = AclFilter {
            resource_type: resource::ANY,
            resource_name: None,
            pattern_type: pattern::ANY,
            principal: None,
            host: None,
            operation: op::ANY,
            permission: permission::ANY,
        };
        assert!(any.matches(&b));
        let matching = AclFilter {
            resource_name: Some("logs-x".into()),
            pattern_type: pattern::MATCH,
            ..any.clone()
        };
        assert!(matching.matches(&b));
        let literal = AclFilter {
            resource_name: Some("logs-".into()),
            pattern_type: pattern::LITERAL,
            ..any.clone()
        };
        assert!(!literal.matches(&b));
        let prefixed = AclFilter {
            resource_name: Some("logs-".into()),
            pattern_type: pattern::PREFIXED,
            ..any.clone()
        };
        assert!(prefixed.matches(&b));
        let other_user = AclFilter {
            principal: Some("User:b".into()),
            ..any
        };
        assert!(!other_user.matches(&b));
        assert!(b.invalid().is_none());
        let bad = AclBinding {
            resource_type: resource::CLUSTER,
            ..b.clone()
        };
        assert!(bad.invalid().is_some());
        let bad = AclBinding {
            principal: "alice".into(),
            ..b
        };
        assert!(bad.invalid().is_some());
    }
}
