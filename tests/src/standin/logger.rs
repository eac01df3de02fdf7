//! A log file in the style of erlmcp's OTP logger output:
//! `2026-11-25T23:18:02.123456+00:00 [error] <0.245.0> erlmcp_server: message`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

pub struct Logger {
    file: Mutex<File>,
}

fn timestamp() -> String {
    let t = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    t.trim_end_matches('Z').to_string() + "+00:00"
}

impl Logger {
    pub fn open(path: &Path) -> std::io::Result<Logger> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Logger {
            file: Mutex::new(file),
        })
    }

    pub fn log(&self, level: &str, pid: &str, module: &str, message: &str) {
        let line = format!(
            "{} [{level}] <0.{pid}.0> {module}: {message}\n",
            timestamp()
        );
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = f.write_all(line.as_bytes());
    }

    pub fn info(&self, module: &str, message: &str) {
        self.log("info", "245", module, message);
    }

    pub fn warning(&self, module: &str, message: &str) {
        self.log("warning", "245", module, message);
    }

    pub fn error(&self, module: &str, message: &str) {
        self.log("error", "245", module, message);
    }
}
