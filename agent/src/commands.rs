//! Executing commands from the controller. The agent only runs actions it announced as
//! capabilities, which come from its own config; a command from an older epoch than the newest
//! this agent has seen is refused (it comes from a deposed decision).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_proto::domain::{
    Action, AgentMessage, Command, CommandResult, CommandUpdate, Epoch, UpdateKind,
};
use dr_proto::pb;
use tokio::sync::mpsc;

use crate::backup_ops::{self, OpSlot};
use crate::config::AgentConfig;
use crate::hooks::{self, HookEnv};
use crate::role::Effect;
use crate::service_ctl;
use crate::state::AgentState;

/// Actions this agent offers, announced in Hello.
pub fn capabilities(config: &AgentConfig) -> Vec<String> {
    let mut c = vec!["ping", "restart", "promote", "demote", "diagnostics"];
    if config.service.log_file.is_some() {
        c.push("logs");
    }
    if config.backup.is_some() {
        c.extend(["backup", "restore", "drill"]);
    }
    c.into_iter().map(String::from).collect()
}

/// Everything a command needs.
#[derive(Clone)]
pub struct Ctx {
    pub config: Arc<AgentConfig>,
    pub state: Arc<AgentState>,
    /// Restart marks the log so the post-start log check counts only new errors.
    pub log_mark: mpsc::UnboundedSender<()>,
    /// The backup, restore, drill or retention running now (one at a time).
    pub ops: Arc<OpSlot>,
    /// The data directory's change journal (`[backup] change_journal`), for incrementals.
    pub journal: Option<Arc<dr_backup::ChangeJournal>>,
}

impl Ctx {
    pub fn env(&self, epoch: Epoch, old: Option<&str>, new: Option<&str>) -> HookEnv {
        let view = self.state.role_view();
        HookEnv {
            host: self.config.host.to_string(),
            group: self.config.group.to_string(),
            epoch: epoch.0,
            role: view.role.to_string(),
            old_primary: old.unwrap_or_default().to_string(),
            new_primary: new.unwrap_or_default().to_string(),
            data_dir: None,
            backup_id: None,
        }
    }

    fn progress(&self, out: &mpsc::Sender<pb::AgentMessage>, id: &str, message: String) {
        tracing::info!(command = %id, %message, "progress");
        let update = CommandUpdate {
            command_id: id.to_string(),
            update: UpdateKind::Progress {
                message,
                done: 0,
                total: 0,
            },
        };
        let _ = out.try_send(AgentMessage::CommandUpdate(update).into());
    }
}

fn result(outcome: Result<String, String>) -> CommandResult {
    CommandResult { outcome }
}

/// Run `command`; updates (progress, chunks, the result) go to `out`.
pub async fn execute(ctx: Ctx, command: Command, out: mpsc::Sender<pb::AgentMessage>) {
    let id = command.id.clone();
    let r = run(&ctx, command, &out).await;
    if let Err(e) = &r.outcome {
        tracing::warn!(command = %id, error = %e, "command failed");
    }
    let update = CommandUpdate {
        command_id: id,
        update: UpdateKind::Result(r),
    };
    let _ = out.send(AgentMessage::CommandUpdate(update).into()).await;
}

async fn run(ctx: &Ctx, command: Command, out: &mpsc::Sender<pb::AgentMessage>) -> CommandResult {
    let seen = ctx.state.last_epoch_seen();
    if command.epoch < seen {
        return result(Err(format!(
            "refused: command {} carries epoch {} but this agent has seen epoch {}",
            command.id, command.epoch, seen
        )));
    }
    let capability = command.action.capability();
    if !capabilities(&ctx.config).iter().any(|c| c == capability) {
        return result(Err(format!(
            "refused: `{capability}` is not enabled on this agent"
        )));
    }
    let host = ctx.config.host.to_string();
    match command.action {
        Action::Ping { note } => result(Ok(format!("pong from {host}: {note}"))),
        Action::Restart { .. } if ctx.ops.running() == Some("restore") => result(Err(
            "refused: a restore is running on this host (it stops and starts the service itself)"
                .into(),
        )),
        Action::Restart { reason } => result(restart(ctx, &command.id, &reason, out).await),
        Action::Promote { old_primary } => {
            result(promote(ctx, command.epoch, old_primary.map(|h| h.to_string())).await)
        }
        Action::Demote {
            new_primary,
            reason,
        } => result(
            demote(
                ctx,
                command.epoch,
                new_primary.map(|h| h.to_string()),
                &reason,
            )
            .await,
        ),
        Action::ReadLogs {
            lines,
            grep,
            follow,
        } => {
            result(crate::diagnostics::read_logs(ctx, &command.id, lines, &grep, follow, out).await)
        }
        Action::Diagnostics { log_mib } => {
            result(crate::diagnostics::bundle(ctx, &command.id, log_mib, out).await)
        }
        Action::Backup { incremental } => {
            result(backup_ops::backup(ctx, &command.id, incremental, out).await)
        }
        Action::VerifyBackup {
            backup_id,
            deep,
            from_host,
        } => result(
            backup_ops::verify(
                ctx,
                &command.id,
                backup_id.as_deref(),
                deep,
                from_host.as_ref(),
                out,
            )
            .await,
        ),
        Action::ListBackups => result(backup_ops::list(ctx).await),
        Action::ApplyRetention {
            keep_last,
            keep_daily,
            keep_weekly,
        } => result(
            backup_ops::apply_retention(
                ctx,
                dr_backup::retention::RetentionPolicy {
                    keep_last,
                    keep_daily,
                    keep_weekly,
                },
            )
            .await,
        ),
        Action::Restore {
            backup_id,
            from_host,
        } => result(
            backup_ops::restore(
                ctx,
                &command.id,
                backup_id.as_deref(),
                from_host.as_ref(),
                out,
            )
            .await,
        ),
        Action::Drill {
            backup_id,
            from_host,
        } => result(
            backup_ops::drill(
                ctx,
                &command.id,
                backup_id.as_deref(),
                from_host.as_ref(),
                out,
            )
            .await,
        ),
    }
}

/// Procedure 1: give the lease back if primary, stop (stop command, grace, SIGKILL of the tree),
/// start, wait healthy, check the log since start.
pub async fn restart(
    ctx: &Ctx,
    id: &str,
    reason: &str,
    out: &mpsc::Sender<pb::AgentMessage>,
) -> Result<String, String> {
    let started = Instant::now();
    let epoch = ctx.state.last_epoch_seen();
    let env = ctx.env(epoch, None, None);
    ctx.state.with_role(|m| {
        m.busy_with = "restart".into();
        ((), m.release("restarting the service"))
    });
    let outcome = async {
        ctx.progress(out, id, format!("stopping ({reason})"));
        let stopped = service_ctl::stop(&ctx.config, &env).await?;
        let _ = ctx.log_mark.send(());
        ctx.progress(out, id, format!("stopped: {stopped}; starting"));
        let began = service_ctl::start(&ctx.config, &env).await?;
        ctx.progress(out, id, format!("{began}; waiting until healthy"));
        let healthy = service_ctl::wait_healthy(&ctx.config).await?;
        Ok::<_, String>(format!(
            "stopped: {stopped}; {began}; healthy {} ms after start",
            healthy.as_millis()
        ))
    }
    .await;
    let log_note = match &ctx.config.service.log_file {
        Some(_) => {
            // the prober's log tail counts errors since the mark; give it one round
            tokio::time::sleep(ctx.config.report_interval).await;
            match ctx
                .state
                .last_report()
                .and_then(|r| r.log)
                .map(|l| l.result)
            {
                Some(Ok(f)) if f.errors_since_start == 0 => {
                    "; log: no errors since start".to_string()
                }
                Some(Ok(f)) => format!(
                    "; log: {} error line(s) since start, last: {}",
                    f.errors_since_start,
                    f.last_errors.last().map(String::as_str).unwrap_or("-")
                ),
                Some(Err(e)) => format!("; log not readable: {e}"),
                None => String::new(),
            }
        }
        None => String::new(),
    };
    ctx.state.with_role(|m| {
        m.busy_with.clear();
        if outcome.is_ok() {
            m.resume();
        }
        ((), Vec::new())
    });
    ctx.state.probe_now.notify_one();
    outcome.map(|d| format!("{d}{log_note} (total {} ms)", started.elapsed().as_millis()))
}

/// Become primary at `epoch`: promote hook, then hold a lease before answering.
async fn promote(ctx: &Ctx, epoch: Epoch, old: Option<String>) -> Result<String, String> {
    let host = ctx.config.host.to_string();
    // The promote hook may already be running (the controller's ack named us primary first).
    let deadline = Instant::now()
        + Duration::from_millis(
            ctx.config
                .hooks
                .promote
                .as_ref()
                .map_or(10_000, |h| h.timeout_ms)
                + 1000,
        );
    let already = loop {
        let state = ctx.state.with_role(|m| {
            if m.promoted == Some(epoch) {
                (Some(true), Vec::new())
            } else if m.busy_with == "promote" {
                (None, Vec::new())
            } else {
                m.busy_with = "promote".into();
                (Some(false), Vec::new())
            }
        });
        match state {
            Some(done) => break done,
            None if Instant::now() >= deadline => {
                return Err("the promote hook did not finish in time".into());
            }
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let hook = if already {
        "promote hook already ran for this epoch".to_string()
    } else {
        let env = ctx.env(epoch, old.as_deref(), Some(&host));
        let r = hooks::run_hook(ctx.config.hooks.promote.as_ref(), &env).await;
        ctx.state.with_role(|m| {
            m.promote_done(epoch, r.is_ok());
            ((), Vec::new())
        });
        match r {
            Ok(o) => {
                ctx.state.set_was_primary(true);
                format!("promote hook: {}", if o.is_empty() { "ok" } else { &o })
            }
            Err(e) => return Err(format!("promote hook failed: {e}")),
        }
    };
    // ask for the lease now and wait until it is held (the LB may route to us after this)
    crate::lease::renew_now(&ctx.state);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !ctx.state.serving_as_primary() {
        if Instant::now() >= deadline {
            return Err(format!(
                "{hook}; no lease within 3 s (is the controller still naming {host} primary?)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        crate::lease::renew_now(&ctx.state);
    }
    Ok(format!("{hook}; lease held"))
}

/// Stop being primary: give the lease back first (so the next primary need not wait), then run
/// the demote hook.
async fn demote(
    ctx: &Ctx,
    epoch: Epoch,
    new: Option<String>,
    reason: &str,
) -> Result<String, String> {
    ctx.state.with_role(|m| {
        m.busy_with = "demote".into();
        ((), m.release(&format!("demoted: {reason}")))
    });
    let env = ctx.env(epoch, Some(ctx.config.host.as_str()), new.as_deref());
    let r = hooks::run_hook(ctx.config.hooks.demote.as_ref(), &env).await;
    ctx.state.with_role(|m| {
        m.demote_done();
        ((), Vec::new())
    });
    ctx.state.set_was_primary(false);
    r.map(|o| {
        format!(
            "lease given back; demote hook: {}",
            if o.is_empty() { "ok" } else { &o }
        )
    })
    .map_err(|e| format!("lease given back; demote hook failed: {e}"))
}

/// Carry out what the role machine asked for (self-promotion after a restart of the agent,
/// demotion of a returning old primary, fencing, lease release).
pub async fn run_effects(ctx: Ctx, mut rx: mpsc::UnboundedReceiver<Effect>) {
    while let Some(effect) = rx.recv().await {
        match effect {
            Effect::Release { epoch, reason } => {
                tracing::warn!(%epoch, %reason, "giving the lease back");
                let m =
                    AgentMessage::LeaseRelease(dr_proto::domain::LeaseRelease { epoch, reason });
                ctx.state.send(m.into());
            }
            Effect::Fence => {
                tracing::error!("lease expired: fencing this host (/primary answers 503)");
                let env = ctx.env(ctx.state.last_epoch_seen(), None, None);
                match hooks::run_hook(ctx.config.hooks.fence.as_ref(), &env).await {
                    Ok(o) => tracing::warn!(output = %o, "fence hook done"),
                    Err(e) => tracing::error!(error = %e, "fence hook failed"),
                }
            }
            Effect::Promote(epoch) => {
                tracing::info!(%epoch, "controller names this host primary: running the promote hook");
                let ctx2 = ctx.clone();
                tokio::spawn(async move {
                    let env = ctx2.env(epoch, None, Some(ctx2.config.host.as_str()));
                    let r = hooks::run_hook(ctx2.config.hooks.promote.as_ref(), &env).await;
                    if let Err(e) = &r {
                        tracing::error!(error = %e, "promote hook failed");
                    } else {
                        ctx2.state.set_was_primary(true);
                    }
                    ctx2.state.with_role(|m| {
                        m.promote_done(epoch, r.is_ok());
                        ((), Vec::new())
                    });
                    crate::lease::renew_now(&ctx2.state);
                });
            }
            Effect::Demote => {
                tracing::warn!("this host is no longer primary: running the demote hook");
                let env = ctx.env(
                    ctx.state.last_epoch_seen(),
                    Some(ctx.config.host.as_str()),
                    None,
                );
                let r = hooks::run_hook(ctx.config.hooks.demote.as_ref(), &env).await;
                if let Err(e) = &r {
                    tracing::error!(error = %e, "demote hook failed");
                }
                ctx.state.with_role(|m| {
                    m.demote_done();
                    ((), Vec::new())
                });
                ctx.state.set_was_primary(false);
            }
        }
    }
}
