//! `erlmcp-standin`: stands in for erlmcp, which cannot be built here.
//!
//! Like erlmcp's observability app it serves `/health` (JSON with `status`, `checks`, `metrics`;
//! 200 or 503), `/live`, `/ready` and `/metrics` (Prometheus text with erlmcp's metric names);
//! `GET /` answers `{"host", "role", "epoch"}` so a client behind a load balancer can tell who
//! served it, and `POST /receipts` stores client data. It keeps writing JSON receipts into its
//! data directory (live data for backups) and logs in erlmcp's style.
//!
//! Faults, through `POST /control/fault/{crash|hang|slow|5xx|flap|memory}` or signals
//! (SIGUSR1 toggles 5xx, SIGUSR2 toggles hang, SIGHUP clears every fault):
//! - crash: the process exits at once, leaving its pid file (as a crashed VM would);
//! - hang: every request (but `/control`) and the receipt writer stall until cleared;
//! - slow: each answer waits `ms` milliseconds;
//! - 5xx: `/`, `/health`, `/ready` answer 500/503;
//! - flap: alternates healthy and 503 every `period_ms`;
//! - memory: allocates `mib_per_s` MiB per second (real memory, reported in the metrics).
//!
//! With `--peer ADDR` (each other member), client receipts are replicated: only the primary
//! takes them, and acknowledges once a majority stored them (`replication`).
//! `watch` polls one host's agent `/primary` and stand-in role into a file, for split-brain
//! checks from inside the host's network namespace.
//!
//! Commands mirror erlmcp's release script: `run` (foreground), `daemon` (start in the
//! background, return once it answers), `stop` (SIGTERM via the pid file, SIGKILL after a grace).

mod cli;
mod faults;
mod http;
mod logger;
mod receipts;
mod replication;
mod watch;

pub use cli::main;
