//! drctl's exit codes: 0 ok, 1 the operation failed, 2 usage or config error.
//!
//! Scripts depend on the split: 1 means "the command was right, the cluster said no or could
//! not be reached" (retry later, look at the cluster); 2 means "fix the command line or the
//! config" (retrying will not help). clap's own usage errors exit 2 as well.

/// The operation was tried and failed: refused by the controller, unreachable, failed on an agent.
pub const EXIT_FAILED: u8 = 1;
/// The command line or the config is wrong; nothing was attempted.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }

    /// A config error (exit 2).
    pub fn config(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A usage error found after parsing (exit 2): a value clap cannot check, a missing `--yes`.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::config(message)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::failed(format!("{e:#}"))
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;
