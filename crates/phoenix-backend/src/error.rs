//! Backend errors, with what the engine needs to decide about retrying.

use std::fmt;

/// Whether a failed request reached the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The request was never sent: retrying is safe.
    NotSent,
    /// The request may have been applied: observe before retrying.
    MaybeApplied,
}

/// The kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Worth retrying after a pause: a timeout, a lock held by someone else, a 5xx.
    Transient,
    /// Retrying will not help.
    Permanent,
    /// The guest does not exist.
    NotFound,
    /// The backend cannot do this at all.
    Unsupported,
}

/// A backend call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BackendError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Whether it may have been applied.
    pub delivery: Delivery,
    /// What failed, quoting the request.
    pub message: String,
    /// The command's output or the task log's tail, when there is one.
    pub detail: Option<String>,
}

impl BackendError {
    /// A transient failure.
    pub fn transient(delivery: Delivery, message: impl Into<String>) -> BackendError {
        BackendError { kind: ErrorKind::Transient, delivery, message: message.into(), detail: None }
    }

    /// A failure retrying will not fix.
    pub fn permanent(delivery: Delivery, message: impl Into<String>) -> BackendError {
        BackendError { kind: ErrorKind::Permanent, delivery, message: message.into(), detail: None }
    }

    /// The guest does not exist.
    pub fn not_found(message: impl Into<String>) -> BackendError {
        BackendError { kind: ErrorKind::NotFound, delivery: Delivery::NotSent, message: message.into(), detail: None }
    }

    /// The backend cannot do this.
    pub fn unsupported(message: impl Into<String>) -> BackendError {
        BackendError {
            kind: ErrorKind::Unsupported,
            delivery: Delivery::NotSent,
            message: message.into(),
            detail: None,
        }
    }

    /// Adds the output or log that explains the failure.
    pub fn with_detail(mut self, detail: impl Into<String>) -> BackendError {
        self.detail = Some(detail.into());
        self
    }

    /// Whether waiting and retrying may help.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why no route can deliver a setting (see [`crate::Backend::route`]): the way it must go needs
/// something the backend's settings do not give it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// The setting goes through the node (`how`), and no way onto the node is configured.
    #[error("it goes through {how}, and no node channel is configured ({setting})")]
    NoNodeChannel {
        /// How the setting would go.
        how: String,
        /// The setting that configures a way onto the node.
        setting: &'static str,
    },
    /// The setting is reserved to a more privileged user (`why`), and no way to act as one is
    /// configured.
    #[error("{why}, and neither {settings} is configured")]
    Reserved {
        /// Who may make the setting.
        why: &'static str,
        /// The settings that would give a way to act as them.
        settings: &'static str,
    },
}
