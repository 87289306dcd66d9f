//! Why an engine operation failed. Expected outcomes of a claim (sold out,
//! already held) are not here: they are values of [`crate::ClaimAnswer`].

use voucherd_core::validation::Invalid;
use voucherd_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such thing for this tenant; other tenants' things are not found
    /// either, so ids reveal nothing.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid request: {0}")]
    Invalid(Invalid),
    /// The request is well formed but the state does not allow it now.
    #[error("{detail}")]
    Conflict { kind: ConflictKind, detail: String },
    /// A queue is full; the caller should retry after a moment.
    #[error("overloaded")]
    Overloaded,
    /// The reservation ran out before it was paid for.
    #[error("the reservation has expired")]
    ReservationExpired,
    /// Work stopped at its time bound and was undone; the same request,
    /// smaller or later, may succeed.
    #[error("{0}")]
    TooSlow(String),
    /// No payment gateway is configured on this node.
    #[error("payments are not available")]
    PaymentsUnavailable,
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

/// The stable kinds of conflicts, one per problem type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// A lifecycle change from the wrong state (publish twice, resume live).
    WrongState,
    /// Publishing needs the whole supply of codes first.
    CodesMissing,
    /// Codes can only be added to a draft, and never past the supply.
    CodesRefused,
    /// A first_login campaign is claimed by logging in, not by claiming.
    LoginOnly,
    /// A payment for the reservation is under way.
    PaymentInProgress,
    /// The reservation was paid for already.
    AlreadyPaid,
}

impl ConflictKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConflictKind::WrongState => "wrong-state",
            ConflictKind::CodesMissing => "codes-missing",
            ConflictKind::CodesRefused => "codes-refused",
            ConflictKind::LoginOnly => "login-only",
            ConflictKind::PaymentInProgress => "payment-in-progress",
            ConflictKind::AlreadyPaid => "already-paid",
        }
    }
}

impl EngineError {
    pub fn conflict(kind: ConflictKind, detail: impl Into<String>) -> EngineError {
        EngineError::Conflict {
            kind,
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> EngineError {
        if error.is_unavailable() {
            EngineError::Unavailable(error)
        } else {
            EngineError::Internal(error)
        }
    }
}

impl From<Invalid> for EngineError {
    fn from(invalid: Invalid) -> EngineError {
        EngineError::Invalid(invalid)
    }
}
