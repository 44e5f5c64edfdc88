//! One error vocabulary: every error the agent's inner layers return has a
//! kind, and this module is the one place that turns kinds into Kafka
//! error codes. Handlers never pick codes for failures of their own.

use kafka_protocol::ResponseError;
use silt_coordinator::{topic_config::ConfigError, LogError, MetaError};
use silt_tiering::{batch::BatchError, ReadError};

/// What went wrong, in the terms a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    // Not found.
    UnknownTopicOrPartition,
    UnknownTopicId,
    OffsetOutOfRange,
    // Invalid input.
    InvalidRequest,
    InvalidRequiredAcks,
    CorruptRecord,
    /// A record batch that contradicts itself (Kafka's INVALID_RECORD).
    InvalidRecord,
    UnsupportedRecordFormat,
    RecordTooLarge,
    /// A CreateTime batch outside the topic's timestamp bounds.
    InvalidTimestamp,
    InvalidTopic,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidConfig,
    /// A request the topic's configuration forbids (DeleteRecords on a
    /// compacted topic).
    PolicyViolation,
    TopicExists,
    // Producer state.
    OutOfOrderSequence,
    ProducerFenced,
    // Transactions.
    /// A newer instance of a transactional producer exists (the
    /// coordinator's PRODUCER_FENCED).
    TxnProducerFenced,
    InvalidTxnState,
    InvalidProducerIdMapping,
    InvalidTransactionTimeout,
    ConcurrentTransactions,
    /// Another part of a batched request failed (Kafka's
    /// OPERATION_NOT_ATTEMPTED).
    OperationNotAttempted,
    /// Offsets of the partition are pending in an open transaction
    /// (OffsetFetch with `require_stable`); retriable.
    UnstableOffsetCommit,
    // Retriable: the request did not take effect.
    /// Object storage failed (a PUT or a read); nothing was committed.
    StorageUnavailable,
    /// This agent is stopping; the client should use another.
    ShuttingDown,
    // Retriable, outcome unknown.
    /// The metadata store failed or did not answer in time; the write may
    /// or may not have happened.
    MetadataTimeout,
    // Groups.
    CoordinatorUnavailable,
    NotCoordinator,
    IllegalGeneration,
    InconsistentGroupProtocol,
    UnknownMemberId,
    InvalidSessionTimeout,
    RebalanceInProgress,
    FencedInstanceId,
    GroupIdNotFound,
    NonEmptyGroup,
    GroupSubscribedToTopic,
    OffsetMetadataTooLarge,
    InvalidGroupId,
    MemberIdRequired,
    GroupMaxSizeReached,
    // Consumer-protocol groups (KIP-848).
    FencedMemberEpoch,
    UnreleasedInstanceId,
    UnsupportedAssignor,
    StaleMemberEpoch,
    InvalidRegularExpression,
    // Replica management (silt has no replicas or log directories).
    InvalidReplicaAssignment,
    NoReassignmentInProgress,
    LogDirNotFound,
    TransactionalIdNotFound,
    // Authorization (the ACL authorizer said no).
    TransactionalIdAuthorizationFailed,
    TopicAuthorizationFailed,
    GroupAuthorizationFailed,
    ClusterAuthorizationFailed,
    /// A bug or damaged data the client cannot fix.
    Internal,
}

impl ErrorKind {
    /// The Kafka error this kind is answered with.
    pub fn kafka(self) -> ResponseError {
        use ErrorKind::*;
        use ResponseError as R;
        match self {
            UnknownTopicOrPartition => R::UnknownTopicOrPartition,
            UnknownTopicId => R::UnknownTopicId,
            OffsetOutOfRange => R::OffsetOutOfRange,
            InvalidRequest => R::InvalidRequest,
            InvalidRequiredAcks => R::InvalidRequiredAcks,
            CorruptRecord => R::CorruptMessage,
            InvalidRecord => R::InvalidRecord,
            UnsupportedRecordFormat => R::UnsupportedForMessageFormat,
            RecordTooLarge => R::MessageTooLarge,
            TxnProducerFenced => R::ProducerFenced,
            InvalidTxnState => R::InvalidTxnState,
            InvalidProducerIdMapping => R::InvalidProducerIdMapping,
            InvalidTransactionTimeout => R::InvalidTransactionTimeout,
            ConcurrentTransactions => R::ConcurrentTransactions,
            OperationNotAttempted => R::OperationNotAttempted,
            UnstableOffsetCommit => R::UnstableOffsetCommit,
            InvalidTimestamp => R::InvalidTimestamp,
            InvalidTopic => R::InvalidTopicException,
            InvalidPartitions => R::InvalidPartitions,
            InvalidReplicationFactor => R::InvalidReplicationFactor,
            InvalidConfig => R::InvalidConfig,
            PolicyViolation => R::PolicyViolation,
            TopicExists => R::TopicAlreadyExists,
            OutOfOrderSequence => R::OutOfOrderSequenceNumber,
            ProducerFenced => R::InvalidProducerEpoch,
            StorageUnavailable => R::KafkaStorageError,
            ShuttingDown => R::NotLeaderOrFollower,
            MetadataTimeout => R::RequestTimedOut,
            CoordinatorUnavailable => R::CoordinatorNotAvailable,
            NotCoordinator => R::NotCoordinator,
            IllegalGeneration => R::IllegalGeneration,
            InconsistentGroupProtocol => R::InconsistentGroupProtocol,
            UnknownMemberId => R::UnknownMemberId,
            InvalidSessionTimeout => R::InvalidSessionTimeout,
            RebalanceInProgress => R::RebalanceInProgress,
            FencedInstanceId => R::FencedInstanceId,
            GroupIdNotFound => R::GroupIdNotFound,
            NonEmptyGroup => R::NonEmptyGroup,
            GroupSubscribedToTopic => R::GroupSubscribedToTopic,
            OffsetMetadataTooLarge => R::OffsetMetadataTooLarge,
            InvalidGroupId => R::InvalidGroupId,
            MemberIdRequired => R::MemberIdRequired,
            GroupMaxSizeReached => R::GroupMaxSizeReached,
            FencedMemberEpoch => R::FencedMemberEpoch,
            UnreleasedInstanceId => R::UnreleasedInstanceId,
            UnsupportedAssignor => R::UnsupportedAssignor,
            StaleMemberEpoch => R::StaleMemberEpoch,
            InvalidRegularExpression => R::InvalidRegularExpression,
            InvalidReplicaAssignment => R::InvalidReplicaAssignment,
            NoReassignmentInProgress => R::NoReassignmentInProgress,
            LogDirNotFound => R::LogDirNotFound,
            TransactionalIdNotFound => R::TransactionalIdNotFound,
            TransactionalIdAuthorizationFailed => R::TransactionalIdAuthorizationFailed,
            TopicAuthorizationFailed => R::TopicAuthorizationFailed,
            GroupAuthorizationFailed => R::GroupAuthorizationFailed,
            ClusterAuthorizationFailed => R::ClusterAuthorizationFailed,
            Internal => R::UnknownServerError,
        }
    }

    /// The Kafka error code.
    pub fn code(self) -> i16 {
        self.kafka().code()
    }
}

/// An error that knows its kind.
pub trait Classify: std::fmt::Display {
    fn kind(&self) -> ErrorKind;

    /// The Kafka error code of this error.
    fn code(&self) -> i16 {
        self.kind().code()
    }
}

impl Classify for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.kafka())
    }
}

/// A write through the commit log failed: whether it happened is unknown.
impl Classify for LogError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::MetadataTimeout
    }
}

impl Classify for MetaError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::MetadataTimeout
    }
}

impl Classify for ReadError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::StorageUnavailable
    }
}

impl Classify for BatchError {
    fn kind(&self) -> ErrorKind {
        match self {
            BatchError::Magic { .. } => ErrorKind::UnsupportedRecordFormat,
            _ => ErrorKind::CorruptRecord,
        }
    }
}

impl Classify for ConfigError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidConfig
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind maps to the Kafka error a client expects for it; the
    /// table is the contract (changing a row changes client behaviour).
    #[test]
    fn kinds_map_to_kafka_codes() {
        use ErrorKind::*;
        let table: &[(ErrorKind, i16)] = &[
            (UnknownTopicOrPartition, 3),
            (UnknownTopicId, 100),
            (OffsetOutOfRange, 1),
            (InvalidRequest, 42),
            (InvalidRequiredAcks, 21),
            (CorruptRecord, 2),
            (InvalidRecord, 87),
            (UnsupportedRecordFormat, 43),
            (RecordTooLarge, 10),
            (TxnProducerFenced, 90),
            (InvalidTxnState, 48),
            (InvalidProducerIdMapping, 49),
            (InvalidTransactionTimeout, 50),
            (ConcurrentTransactions, 51),
            (OperationNotAttempted, 55),
            (UnstableOffsetCommit, 88),
            (InvalidTimestamp, 32),
            (InvalidTopic, 17),
            (InvalidPartitions, 37),
            (InvalidReplicationFactor, 38),
            (InvalidConfig, 40),
            (PolicyViolation, 44),
            (TopicExists, 36),
            (OutOfOrderSequence, 45),
            (ProducerFenced, 47),
            (StorageUnavailable, 56),
            (ShuttingDown, 6),
            (MetadataTimeout, 7),
            (CoordinatorUnavailable, 15),
            (NotCoordinator, 16),
            (IllegalGeneration, 22),
            (InconsistentGroupProtocol, 23),
            (UnknownMemberId, 25),
            (InvalidSessionTimeout, 26),
            (RebalanceInProgress, 27),
            (FencedInstanceId, 82),
            (GroupIdNotFound, 69),
            (NonEmptyGroup, 68),
            (GroupSubscribedToTopic, 86),
            (OffsetMetadataTooLarge, 12),
            (InvalidGroupId, 24),
            (MemberIdRequired, 79),
            (GroupMaxSizeReached, 81),
            (InvalidReplicaAssignment, 39),
            (NoReassignmentInProgress, 85),
            (LogDirNotFound, 57),
            (TransactionalIdNotFound, 105),
            (TransactionalIdAuthorizationFailed, 53),
            (Internal, -1),
        ];
        for (kind, code) in table {
            assert_eq!(kind.code(), *code, "{kind:?}");
        }
        // Retriable kinds are retriable to Kafka clients too.
        for kind in [
            StorageUnavailable,
            ShuttingDown,
            MetadataTimeout,
            CoordinatorUnavailable,
            NotCoordinator,
            UnknownTopicOrPartition,
            CorruptRecord,
        ] {
            assert!(kind.kafka().is_retriable(), "{kind:?}");
        }
        for kind in [
            InvalidConfig,
            InvalidTxnState,
            RecordTooLarge,
            InvalidTopic,
            TopicExists,
        ] {
            assert!(!kind.kafka().is_retriable(), "{kind:?}");
        }
    }

    #[test]
    fn foreign_errors_classify() {
        assert_eq!(
            LogError::Closed.code(),
            ResponseError::RequestTimedOut.code()
        );
        assert_eq!(
            MetaError::Unavailable("down".into()).kind(),
            ErrorKind::MetadataTimeout
        );
        assert_eq!(
            BatchError::Magic { at: 0, magic: 1 }.kind(),
            ErrorKind::UnsupportedRecordFormat
        );
        assert_eq!(
            BatchError::Crc {
                at: 0,
                stored: 1,
                computed: 2
            }
            .kind(),
            ErrorKind::CorruptRecord
        );
        let read = ReadError::Range {
            path: "o".into(),
            start: 5,
            end: 9,
            size: 4,
        };
        assert_eq!(read.kind(), ErrorKind::StorageUnavailable);
        assert_eq!(
            silt_coordinator::topic_config::validate("x", "1")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidConfig
        );
    }
}
