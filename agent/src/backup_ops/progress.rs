//! Engine progress as `CommandProgress` updates to the controller: at most a few per second
//! (phase changes always), so a progress bar moves without flooding the stream.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dr_backup::progress::{Phase, Progress, ProgressSink};
use dr_backup::restore::human_bytes;
use dr_proto::domain::{AgentMessage, CommandUpdate, UpdateKind};
use dr_proto::pb;
use tokio::sync::mpsc;

/// Least time between two updates of the same phase.
const EVERY: Duration = Duration::from_millis(300);

/// Sends a progress line for command `id`; never blocks (a full stream drops the update).
pub fn send(
    out: &mpsc::Sender<pb::AgentMessage>,
    id: &str,
    message: String,
    done: u64,
    total: u64,
) {
    tracing::info!(command = %id, %message, "progress");
    let update = CommandUpdate {
        command_id: id.to_string(),
        update: UpdateKind::Progress {
            message,
            done,
            total,
        },
    };
    let _ = out.try_send(AgentMessage::CommandUpdate(update).into());
}

/// The engine's progress for one command (`what` is `backup`, `restore`, `verify`, `drill`).
pub struct CommandProgress {
    out: mpsc::Sender<pb::AgentMessage>,
    id: String,
    what: &'static str,
    last: Mutex<Option<(Instant, Phase)>>,
}

impl CommandProgress {
    pub fn new(out: &mpsc::Sender<pb::AgentMessage>, id: &str, what: &'static str) -> Self {
        Self {
            out: out.clone(),
            id: id.to_string(),
            what,
            last: Mutex::new(None),
        }
    }
}

/// One line: `backup: archiving 120/4000 files, 1.2 MiB of 40.0 MiB`.
pub fn describe(what: &str, p: &Progress) -> String {
    let phase = match p.phase {
        Phase::Scanning => "scanning",
        Phase::Archiving => "archiving",
        Phase::Committing => "committing",
        Phase::Reading => "reading",
        Phase::Finishing => "finishing",
    };
    let files = if p.files_total > 0 {
        format!("{}/{} entries", p.files_done, p.files_total)
    } else {
        format!("{} entries", p.files_done)
    };
    let bytes = if p.bytes_total > 0 {
        format!(
            "{} of {}",
            human_bytes(p.bytes_done),
            human_bytes(p.bytes_total)
        )
    } else {
        human_bytes(p.bytes_done)
    };
    format!(
        "{what}: {phase} {files}, {bytes} ({} stored)",
        human_bytes(p.stored_bytes)
    )
}

impl ProgressSink for CommandProgress {
    fn update(&self, p: &Progress) {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, phase)) = *last
                && phase == p.phase
                && now.duration_since(at) < EVERY
            {
                return;
            }
            *last = Some((now, p.phase));
        }
        send(
            &self.out,
            &self.id,
            describe(self.what, p),
            p.bytes_done,
            p.bytes_total,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_to_a_few_per_second_with_every_phase_change() {
        let (tx, mut rx) = mpsc::channel(100);
        let sink = CommandProgress::new(&tx, "c1", "backup");
        let mut p = Progress {
            phase: Phase::Scanning,
            files_done: 0,
            files_total: 0,
            bytes_done: 0,
            bytes_total: 0,
            stored_bytes: 0,
        };
        for i in 0..50 {
            p.files_done = i;
            sink.update(&p);
        }
        p.phase = Phase::Archiving;
        sink.update(&p);
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 2, "one per phase within 300 ms");
    }
}
