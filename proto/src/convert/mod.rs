//! Wire ↔ domain conversions. Receiving side: `TryFrom<pb::X>` validates and returns a
//! [`ProtocolError`] naming the field. Sending side: plain `From`.

mod health;
mod incident;
mod session;
mod status;
mod views;

use crate::domain::{GroupName, HostName, NameError};

/// A message that does not make sense: the peer is broken, outdated or hostile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` ({value:?}) {reason}")]
    BadName {
        field: &'static str,
        value: String,
        reason: NameError,
    },
    #[error("field `{field}` has unknown value {value}")]
    UnknownEnum { field: &'static str, value: i32 },
    #[error("field `{field}` is out of range: {value}")]
    OutOfRange { field: &'static str, value: String },
    #[error("field `{field}` is too long ({len} bytes, at most {max})")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl From<ProtocolError> for tonic::Status {
    fn from(e: ProtocolError) -> Self {
        tonic::Status::invalid_argument(format!("protocol error: {e}"))
    }
}

/// Characters of a refused value an error repeats: enough to recognise it. The error is logged
/// and sent back as a gRPC status message (an HTTP/2 trailer), so it must not grow with the
/// peer's input.
const MAX_ECHO: usize = 64;

/// `s` as an error may repeat it: the first [`MAX_ECHO`] characters, and the length if cut.
pub(crate) fn excerpt(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes)", &s[..cut], s.len()),
    }
}

pub(crate) fn host(field: &'static str, s: String) -> Result<HostName, ProtocolError> {
    HostName::new(s.clone()).map_err(|reason| ProtocolError::BadName {
        field,
        value: excerpt(&s),
        reason,
    })
}

pub(crate) fn optional_host(
    field: &'static str,
    s: String,
) -> Result<Option<HostName>, ProtocolError> {
    if s.is_empty() {
        Ok(None)
    } else {
        host(field, s).map(Some)
    }
}

pub(crate) fn group(field: &'static str, s: String) -> Result<GroupName, ProtocolError> {
    GroupName::new(s.clone()).map_err(|reason| ProtocolError::BadName {
        field,
        value: excerpt(&s),
        reason,
    })
}

/// Free text is bounded so a peer cannot grow our memory through it.
pub(crate) fn text(field: &'static str, s: String, max: usize) -> Result<String, ProtocolError> {
    if s.len() > max {
        return Err(ProtocolError::TooLong {
            field,
            len: s.len(),
            max,
        });
    }
    Ok(s)
}

pub(crate) const MAX_DETAIL: usize = 4096;
