//! The registry's errors and the one table mapping them to Confluent's error codes.

/// Everything a registry operation can fail with. [`Error::error_code`] and
/// [`Error::http_status`] are the table from these to what Confluent clients expect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(String),
    #[error("Schema {0} not found")]
    SchemaNotFound(String),
    #[error("Schema not found")]
    SchemaNotInSubject,
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{0}' Version {1} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted(String, i64),
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, i64),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    CompatibilityNotConfigured(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    ModeNotConfigured(String),
    /// Weft's review workflow (`review.rs`).
    #[error("Proposal {0} not found")]
    ProposalNotFound(i64),
    /// The message carries the reasons.
    #[error("{0}")]
    Incompatible(String),
    #[error("Invalid schema {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between \
         [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "Invalid compatibility level. Valid values are none, backward, forward, full, \
         backward_transitive, forward_transitive, and full_transitive"
    )]
    InvalidCompatibility,
    #[error(
        "Invalid mode. Valid values are READWRITE, READONLY, READONLY_OVERRIDE, IMPORT and REVIEW"
    )]
    InvalidMode,
    #[error("{0}")]
    NotPermitted(String),
    /// The ACLs deny the caller (`auth.rs`'s per-item decisions).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    ReferenceExists(String),
    #[error("The specified subject '{0}' is not valid.")]
    InvalidSubject(String),
    /// Malformed JSON in a request body.
    #[error("{0}")]
    BadRequest(String),
    /// The request body exceeds [`crate::MAX_BODY_BYTES`].
    #[error("Request body is larger than {} bytes", crate::MAX_BODY_BYTES)]
    PayloadTooLarge,
    /// Well-formed JSON of the wrong shape.
    #[error("{0}")]
    Unprocessable(String),
    #[error("Error in the backend data store - {0}")]
    Store(#[from] weft_store::Error),
    #[error("Error while processing the request - {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Confluent's `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            Error::SubjectNotFound(_) => 40401,
            Error::VersionNotFound(_) => 40402,
            Error::SchemaNotFound(_) | Error::SchemaNotInSubject => 40403,
            Error::SubjectSoftDeleted(_) => 40404,
            Error::SubjectNotSoftDeleted(_) => 40405,
            Error::VersionSoftDeleted(..) => 40406,
            Error::VersionNotSoftDeleted(..) => 40407,
            Error::CompatibilityNotConfigured(_) => 40408,
            Error::ModeNotConfigured(_) => 40409,
            Error::ProposalNotFound(_) => 40410,
            Error::Forbidden(_) => 40301,
            // Confluent answers incompatibility with the bare HTTP status as its code.
            Error::Incompatible(_) => 409,
            Error::InvalidSchema(_) => 42201,
            Error::InvalidVersion(_) => 42202,
            Error::InvalidCompatibility => 42203,
            Error::InvalidMode => 42204,
            Error::NotPermitted(_) => 42205,
            Error::ReferenceExists(_) => 42206,
            Error::InvalidSubject(_) => 42208,
            Error::BadRequest(_) => 400,
            Error::PayloadTooLarge => 413,
            Error::Unprocessable(_) => 422,
            Error::Store(_) => 50001,
            Error::Internal(_) => 500,
        }
    }

    /// The HTTP status: the first three digits of the code.
    pub fn http_status(&self) -> u16 {
        let code = self.error_code();
        if code >= 10_000 {
            (code / 100) as u16
        } else {
            code as u16
        }
    }
}
