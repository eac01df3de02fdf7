//! A small disk for one test host: a tmpfs of a fixed size mounted as the host's directory (the
//! parent of its data directory and of the restore staging directory), and a ballast file that
//! fills it to the last byte. The mount point's name carries the test process's pid, so
//! [`clean_stale_mounts`] can unmount what a crashed run left; drop unmounts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    pub mount: PathBuf,
}

/// The marker every small-disk mount point's name starts with.
const MARK: &str = "drs-disk-";

impl SmallDisk {
    /// Mount a tmpfs of `megabytes` at `parent/drs-disk-<pid>-<name>`.
    pub fn mount(parent: &Path, name: &str, megabytes: u64) -> anyhow::Result<SmallDisk> {
        let mount = parent.join(format!("{MARK}{}-{name}", std::process::id()));
        std::fs::create_dir_all(&mount)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&mount)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "mount tmpfs on {}: {}",
            mount.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(SmallDisk { mount })
    }

    fn ballast(&self) -> PathBuf {
        self.mount.join("ballast")
    }

    /// Write a ballast file until the disk is full (ENOSPC); returns the bytes written.
    pub fn fill(&self) -> anyhow::Result<u64> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.ballast())?;
        let chunk = vec![0x5au8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => return Err(e.into()),
            }
        }
        // the last partial blocks
        while let Ok(1) = f.write(&[0x5a]) {
            written += 1;
        }
        Ok(written)
    }

    /// Fill the disk, then give back `keep` bytes: the next writer runs out part way.
    pub fn fill_leaving(&self, keep: u64) -> anyhow::Result<()> {
        let written = self.fill()?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.ballast())?;
        f.set_len(written.saturating_sub(keep))?;
        Ok(())
    }

    /// A thread that fills the disk the moment `trigger` exists (polled every millisecond, for
    /// at most `within`): the disk runs out in the middle of whatever created `trigger`. The
    /// handle says whether it fired.
    pub fn fill_when_exists(
        &self,
        trigger: PathBuf,
        within: std::time::Duration,
    ) -> std::thread::JoinHandle<bool> {
        let disk = SmallDisk {
            mount: self.mount.clone(),
        };
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + within;
            let fired = loop {
                if trigger.exists() {
                    break disk.fill().is_ok();
                }
                if std::time::Instant::now() > until {
                    break false;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            };
            // a copy for the thread: not the owner of the mount
            std::mem::forget(disk);
            fired
        })
    }

    /// Free bytes on the disk now.
    pub fn free_bytes(&self) -> u64 {
        rustix::fs::statvfs(&self.mount)
            .map(|s| s.f_bavail * s.f_frsize)
            .unwrap_or(0)
    }

    /// Remove the ballast.
    pub fn drain(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.ballast()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).output();
    }
}

/// Unmount small disks whose test process is gone.
pub fn clean_stale_mounts() {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return;
    };
    for line in mounts.lines() {
        let Some(point) = line.split_whitespace().nth(1) else {
            continue;
        };
        let Some(rest) = point.rsplit('/').next().and_then(|n| n.strip_prefix(MARK)) else {
            continue;
        };
        let pid: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = Command::new("umount").args(["-l", point]).output();
        }
    }
}
