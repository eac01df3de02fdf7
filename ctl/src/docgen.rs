//! `drctl completions SHELL` and `drctl man`: shell completions and manual pages generated from
//! the clap definition itself, so they can never disagree with the commands drctl accepts.

use std::path::Path;

use clap_complete::Shell;

use crate::error::{CliError, CliResult};

/// The completion script for `shell` on stdout, e.g.
/// `drctl completions bash > /etc/bash_completion.d/drctl`.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> CliResult {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    write_stdout(&out)
}

/// Without `dir`: the page for drctl itself on stdout (`drctl man | man -l -`). With `dir`: one
/// page per command (`drctl.1`, `drctl-backup-create.1`, ...) written there, for `MANPATH`.
pub fn man(cmd: clap::Command, dir: Option<&Path>) -> CliResult {
    match dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| CliError::failed(format!("cannot render the man page: {e}")))?;
            write_stdout(&out)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                CliError::failed(format!(
                    "cannot write man pages into {}: {e}",
                    dir.display()
                ))
            })?;
            eprintln!(
                "wrote the man pages into {} (read one with: man -l {}/drctl.1)",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
    }
}

fn write_stdout(bytes: &[u8]) -> CliResult {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::failed(format!("cannot write to stdout: {e}")))
}
