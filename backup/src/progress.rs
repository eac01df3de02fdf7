//! Progress reporting: the engine calls a sink now and then (not per byte) so the agent can
//! stream progress to the controller and drctl can draw a bar.

/// Which step a progress update belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Walking the data directory.
    Scanning,
    /// Reading files into the archive.
    Archiving,
    /// Writing `.sha256` and the manifest.
    Committing,
    /// Reading an archive back (verify or restore).
    Reading,
    /// Restore: final checks and sync.
    Finishing,
}

/// A snapshot of progress. Totals come from the manifest (restore); a backup's grow while its
/// walk, which runs ahead of the archiving, is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Current step.
    pub phase: Phase,
    /// Entries processed.
    pub files_done: u64,
    /// Entries expected.
    pub files_total: u64,
    /// File content bytes processed.
    pub bytes_done: u64,
    /// File content bytes expected.
    pub bytes_total: u64,
    /// Compressed bytes written to or read from the store.
    pub stored_bytes: u64,
}

/// Receives progress. Implemented for any `Fn(&Progress) + Sync`.
pub trait ProgressSink: Sync {
    /// Called with the latest progress; must be quick.
    fn update(&self, progress: &Progress);
}

impl<F: Fn(&Progress) + Sync> ProgressSink for F {
    fn update(&self, progress: &Progress) {
        self(progress)
    }
}

/// Calls a sink at most every `FILES_STEP` files or `BYTES_STEP` bytes.
pub(crate) struct Throttle<'a> {
    sink: Option<&'a dyn ProgressSink>,
    last_files: u64,
    last_bytes: u64,
    pub(crate) progress: Progress,
}

const FILES_STEP: u64 = 256;
const BYTES_STEP: u64 = 16 << 20;

impl<'a> Throttle<'a> {
    pub(crate) fn new(sink: Option<&'a dyn ProgressSink>, phase: Phase) -> Self {
        Self {
            sink,
            last_files: 0,
            last_bytes: 0,
            progress: Progress {
                phase,
                files_done: 0,
                files_total: 0,
                bytes_done: 0,
                bytes_total: 0,
                stored_bytes: 0,
            },
        }
    }

    /// Reports if enough happened since the last report.
    pub(crate) fn tick(&mut self) {
        let p = &self.progress;
        if p.files_done - self.last_files >= FILES_STEP
            || p.bytes_done - self.last_bytes >= BYTES_STEP
        {
            self.force();
        }
    }

    /// Reports now (phase changes, the end).
    pub(crate) fn force(&mut self) {
        self.last_files = self.progress.files_done;
        self.last_bytes = self.progress.bytes_done;
        if let Some(s) = self.sink {
            s.update(&self.progress);
        }
    }

    pub(crate) fn phase(&mut self, phase: Phase) {
        self.progress.phase = phase;
        self.force();
    }
}
