//! The storage layer's errors, one enum with structured variants; `src/api/error.rs` maps them
//! to the API's error codes, and nothing below the API knows HTTP.
//!
//! * [`Error::Refused`]: the command does not fit the state (a missing object, a failed
//!   condition, a limit of the state, too much waiting work): the client's to change or retry.
//!   Nothing was written.
//! * [`Error::Log`]: the log would not take the entry (a full batch, a full disk, a stop) or
//!   failed it (a poisoned log).
//! * [`Error::Corrupt`]: stored data, or state rebuilt from it, disagrees with itself.
//! * [`Error::Unavailable`]: the shard is not serving (still recovering, or stopped).
//!
//! Replay and apply return [`Corrupt`] alone: an entry that does not apply is damage (or a bug).

use crate::log::LogError;

/// Why a command was not carried out.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    Refused(Refusal),
    Log(LogError),
    Corrupt(String),
    Unavailable(String),
}

/// What the state refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// The object does not exist.
    NotFound(String),
    /// A condition failed; the version there is now, where the object has one.
    Conflict {
        message: String,
        current_version: Option<u64>,
    },
    /// The command cannot be carried out as given (a limit of the state, a bad query); with a
    /// position in the query where one is known.
    Invalid { message: String, position: Option<usize> },
    /// Too much work waiting here now; retry later.
    Busy(String),
}

/// Stored data that does not decode, or an entry that does not apply to the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt(pub String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Corrupt {
    fn from(why: String) -> Corrupt {
        Corrupt(why)
    }
}

impl From<&str> for Corrupt {
    fn from(why: &str) -> Corrupt {
        Corrupt(why.to_string())
    }
}

impl From<Corrupt> for Error {
    fn from(c: Corrupt) -> Error {
        Error::Corrupt(c.0)
    }
}

impl From<LogError> for Error {
    fn from(e: LogError) -> Error {
        Error::Log(e)
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error::Refused(r)
    }
}

impl Error {
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::Refused(Refusal::NotFound(message.into()))
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Refused(Refusal::Invalid {
            message: message.into(),
            position: None,
        })
    }

    pub fn busy(message: impl Into<String>) -> Error {
        Error::Refused(Refusal::Busy(message.into()))
    }

    pub fn conflict(message: impl Into<String>, current_version: Option<u64>) -> Error {
        Error::Refused(Refusal::Conflict {
            message: message.into(),
            current_version,
        })
    }

    /// A one-line description (for logs).
    pub fn message(&self) -> String {
        match self {
            Error::Refused(
                Refusal::NotFound(m)
                | Refusal::Conflict { message: m, .. }
                | Refusal::Invalid { message: m, .. }
                | Refusal::Busy(m),
            ) => m.clone(),
            Error::Log(e) => e.to_string(),
            Error::Corrupt(m) => format!("stored data is damaged: {m}"),
            Error::Unavailable(m) => m.clone(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}
