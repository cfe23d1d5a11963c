//! The input errors of DESIGN.md section 3. Each renders as the exact reply text,
//! error code first, so the module maps them to replies in one place.

use std::fmt;

/// Why a client argument was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    DigestFormat,
    DigestLength,
    DigestUnsupported,
    /// Two digests of one blob share an algorithm but not a value (REPOSETDESCRIPTOR).
    DigestMismatch,
    /// Bytes that do not hash to their digest (SETDATA).
    DigestContent,
    Name(&'static str),
    /// `field` is `length` or `size`.
    Size {
        field: &'static str,
        reason: &'static str,
    },
    Path(&'static str),
    MediaType(&'static str),
}

impl InputError {
    /// The error code a client can match on.
    pub fn code(&self) -> &'static str {
        match self {
            InputError::DigestFormat
            | InputError::DigestLength
            | InputError::DigestUnsupported
            | InputError::DigestMismatch
            | InputError::DigestContent => "DIGEST_INVALID",
            InputError::Name(_) => "NAME_INVALID",
            InputError::Size { .. } => "SIZE_INVALID",
            InputError::Path(_) | InputError::MediaType(_) => "ERR",
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code();
        match self {
            InputError::DigestFormat => write!(f, "{code} invalid checksum digest format"),
            InputError::DigestLength => write!(f, "{code} invalid checksum digest length"),
            InputError::DigestUnsupported => write!(f, "{code} unsupported digest algorithm"),
            InputError::DigestMismatch => write!(f, "{code} digests differ but algorithm does not"),
            InputError::DigestContent => write!(f, "{code} content does not match digest"),
            InputError::Name(reason) => write!(f, "{code} {reason}"),
            InputError::Size { field, reason } => write!(f, "{code} invalid {field}: {reason}"),
            InputError::Path(reason) => write!(f, "{code} invalid path: {reason}"),
            InputError::MediaType(reason) => write!(f, "{code} invalid mediatype: {reason}"),
        }
    }
}

impl std::error::Error for InputError {}
