//! Progress of an operation whose size is unknown (a change of primary, a restart): a spinner
//! with the current step on a terminal, one line per new step otherwise. Always on stderr, so
//! stdout keeps only the result.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Steps {
    bar: Option<ProgressBar>,
    started: Instant,
    last: String,
    last_stamped: String,
}

impl Steps {
    pub fn start(first: &str) -> Steps {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        let mut steps = Steps {
            bar,
            started: Instant::now(),
            last: String::new(),
            last_stamped: String::new(),
        };
        steps.step(first);
        steps
    }

    /// Show `line` if it differs from the current step; the previous step stays printed above.
    pub fn step(&mut self, line: &str) {
        if line == self.last {
            return;
        }
        let stamped = format!("  {:>5.1}s  {line}", self.started.elapsed().as_secs_f64());
        match &self.bar {
            Some(b) => {
                if !self.last_stamped.is_empty() {
                    b.println(&self.last_stamped);
                }
                b.set_message(line.to_string());
            }
            None => eprintln!("{stamped}"),
        }
        self.last = line.to_string();
        self.last_stamped = stamped;
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Remove the spinner (the caller prints the outcome).
    pub fn finish(self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
