//! Executing commands from the controller. The agent only runs actions it announced as
//! capabilities, which come from its own config; a command from an older epoch than the newest
//! this agent has seen is refused (it comes from a deposed decision).

use dr_proto::domain::{Action, Command, CommandResult};

use crate::state::AgentState;

/// Actions this agent offers, announced in Hello.
pub fn capabilities() -> Vec<String> {
    vec!["ping".to_string()]
}

pub async fn execute(host: &str, state: &AgentState, command: Command) -> CommandResult {
    let seen = state.last_epoch_seen();
    if command.epoch < seen {
        return CommandResult {
            outcome: Err(format!(
                "refused: command {} carries epoch {} but this agent has seen epoch {}",
                command.id, command.epoch, seen
            )),
        };
    }
    let capability = command.action.capability();
    if !capabilities().iter().any(|c| c == capability) {
        return CommandResult {
            outcome: Err(format!(
                "refused: `{capability}` is not enabled on this agent"
            )),
        };
    }
    match command.action {
        Action::Ping { note } => CommandResult {
            outcome: Ok(format!("pong from {host}: {note}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dr_proto::domain::{Epoch, Role};

    #[tokio::test]
    async fn stale_epoch_commands_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = AgentState::open(dir.path()).unwrap();
        state.observe(Epoch(3), Role::Replica, None);
        let cmd = |epoch| Command {
            id: "c".into(),
            epoch: Epoch(epoch),
            action: Action::Ping { note: "x".into() },
        };
        let r = execute("a", &state, cmd(2)).await;
        assert!(r.outcome.unwrap_err().contains("epoch 2"));
        let r = execute("a", &state, cmd(3)).await;
        assert_eq!(r.outcome.unwrap(), "pong from a: x");
    }
}
