//! Host probe: CPU, memory and load (sysinfo), free space on the data directory's filesystem
//! (statvfs). Keeps one `System` across rounds because CPU usage is a difference over time.

use std::path::PathBuf;

use dr_proto::domain::HostProbe;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

pub struct HostFacts {
    sys: Option<System>,
    data_dir: PathBuf,
}

impl HostFacts {
    pub fn new(data_dir: PathBuf) -> HostFacts {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        if let Err(e) = &sys {
            tracing::warn!(error = %e, "host facts unavailable (sysinfo)");
        }
        HostFacts {
            sys: sys.ok(),
            data_dir,
        }
    }

    pub fn probe(&mut self) -> HostProbe {
        let (free, total) = disk(&self.data_dir);
        let Some(sys) = self.sys.as_mut() else {
            return HostProbe {
                disk_free_bytes: free,
                disk_total_bytes: total,
                ..Default::default()
            };
        };
        sys.refresh_cpu_usage();
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let load = System::load_average().unwrap_or(sysinfo::LoadAvg {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        });
        let sys = &*sys;
        HostProbe {
            cpu_percent: f64::from(sys.global_cpu_usage()),
            memory_total_bytes: sys.total_memory(),
            memory_used_bytes: sys.used_memory(),
            load1: load.one,
            load5: load.five,
            load15: load.fifteen,
            disk_free_bytes: free,
            disk_total_bytes: total,
        }
    }
}

/// Free and total bytes of the filesystem holding `dir` (or its nearest existing parent).
pub fn disk(dir: &std::path::Path) -> (u64, u64) {
    let mut p = dir.to_path_buf();
    loop {
        if let Ok(s) = rustix::fs::statvfs(&p) {
            return (s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize);
        }
        if !p.pop() {
            return (0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_real_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = HostFacts::new(dir.path().join("not-yet-created"));
        let p = h.probe();
        assert!(p.memory_total_bytes > 0);
        assert!(p.disk_total_bytes > 0 && p.disk_free_bytes <= p.disk_total_bytes);
        assert!((0.0..=100.0).contains(&p.cpu_percent));
    }
}
