//! `drctl watch`: a live status view, like `pg_autoctl watch`. On a terminal it redraws the
//! status table in place every interval until Ctrl-C, with the latest role changes and the open
//! incidents under it; elsewhere it prints one snapshot per interval (with `-o json`, one status
//! object per line, the shape of `drctl status -o json`), and `--count N` stops it after N.
//! A controller that goes away is retried every interval (the view says so), so the view
//! follows a controller failover instead of dying in the middle of an incident.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dr_proto::domain::{HistoryView, StatusView};

use crate::client::{self, Connected};
use crate::config::DrctlConfig;
use crate::error::{CliError, CliResult};
use crate::history::{secs, when};
use crate::output::{Colors, Format};
use crate::status;

/// The shortest interval accepted: a watch must not load the controller.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Role changes shown under the table.
const RECENT_CHANGES: usize = 5;
/// Incidents read per refresh (the open ones are shown).
const HISTORY_LIMIT: u32 = 20;

#[derive(Clone, Debug)]
pub struct WatchArgs {
    pub group: Option<String>,
    pub interval: Duration,
    /// Stop after this many refreshes (None: until Ctrl-C).
    pub count: Option<u64>,
    pub format: Format,
}

/// `--interval`: milliseconds (`500`) or a duration (`500ms`, `2s`); at least 100 ms.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        Duration::from_millis(text.parse().map_err(|e| format!("{e}"))?)
    } else {
        humantime::parse_duration(text).map_err(|e| format!("{e} (try 500ms or 2s)"))?
    };
    if d < MIN_INTERVAL {
        return Err(format!("{text}: at least {} ms", MIN_INTERVAL.as_millis()));
    }
    Ok(d)
}

/// The terminal's alternate screen, with the cursor hidden; restored when dropped (also on
/// Ctrl-C, which the watch loop catches).
struct Screen;

impl Screen {
    fn enter() -> Screen {
        print!("\x1b[?1049h\x1b[?25l");
        let _ = std::io::stdout().flush();
        Screen
    }

    /// Draw `frame` over the previous one without blanking the screen first (no flicker).
    fn draw(&self, frame: &str) {
        let mut out = String::from("\x1b[H");
        for line in frame.lines() {
            out.push_str(line);
            out.push_str("\x1b[K\n");
        }
        out.push_str("\x1b[J");
        print!("{out}");
        let _ = std::io::stdout().flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
    }
}

struct Snapshot {
    status: StatusView,
    /// None when only the status could be read (the view says so).
    history: Option<HistoryView>,
}

/// One refresh; on failure the connection is dropped, so the next refresh dials again (and
/// finds the new leader).
async fn refresh(
    config: &DrctlConfig,
    conn: &mut Option<Connected>,
    group: Option<&str>,
    with_history: bool,
) -> CliResult<Snapshot> {
    if conn.is_none() {
        *conn = Some(client::connect(config).await?);
    }
    let c = conn.as_mut().expect("connected above");
    let status = match status::fetch(c, group).await {
        Ok(s) => s,
        Err(e) => {
            *conn = None;
            return Err(e);
        }
    };
    let history = if with_history {
        crate::history::fetch_history(c, group, HISTORY_LIMIT)
            .await
            .ok()
    } else {
        None
    };
    Ok(Snapshot { status, history })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn header(args: &WatchArgs, live: bool, colors: Colors) -> String {
    format!(
        "{}  every {:.1} s  {} UTC{}\n",
        colors.bold("drctl watch"),
        args.interval.as_secs_f64(),
        when(now_ms()),
        if live { "  (Ctrl-C to stop)" } else { "" }
    )
}

fn render_history(h: &HistoryView, colors: Colors) -> String {
    let mut out = format!("{}\n", colors.bold("recent role changes"));
    if h.role_changes.is_empty() {
        out.push_str("  none\n");
    }
    for ch in h.role_changes.iter().take(RECENT_CHANGES) {
        out.push_str(&format!(
            "  {}  {}  epoch {}  {} {} → {}  RTO {}  {}\n",
            when(ch.at_unix_ms),
            ch.group,
            ch.epoch.0,
            ch.kind,
            ch.from.as_ref().map(|h| h.as_str()).unwrap_or("-"),
            ch.to,
            secs(ch.rto_ms),
            ch.reason
        ));
    }
    let open: Vec<_> = h.incidents.iter().filter(|i| i.is_open()).collect();
    out.push_str(&format!("\n{}\n", colors.bold("open incidents")));
    if open.is_empty() {
        out.push_str("  none\n");
    }
    for i in open {
        out.push_str(&format!(
            "  {}  {}  [{}]  {}  escalation step {}  (drctl incident {})\n",
            i.id, i.title, i.category, i.phase, i.escalation_step, i.id
        ));
    }
    out
}

fn render_frame(snapshot: &Snapshot, colors: Colors) -> String {
    let mut out = status::render_table(&snapshot.status, colors);
    out.push('\n');
    match &snapshot.history {
        Some(h) => out.push_str(&render_history(h, colors)),
        None => out.push_str("(history unavailable this time)\n"),
    }
    out
}

/// The status as one line of JSON (`drctl status -o json`, compact).
fn json_line(view: &StatusView) -> String {
    let mut view = view.clone();
    for g in &mut view.groups {
        for m in &mut g.members {
            m.last_report = None;
        }
    }
    serde_json::to_string(&view).expect("status serializes")
}

pub async fn watch(config: &DrctlConfig, args: WatchArgs) -> CliResult {
    let live = args.format == Format::Table && std::io::stdout().is_terminal();
    let colors = Colors::detect();
    // the first connection decides whether there is anything to watch: fail fast (exit 1)
    let mut conn = Some(client::connect(config).await?);
    let screen = live.then(Screen::enter);
    let mut last_good: Option<(Snapshot, Instant)> = None;
    let mut last_error: Option<CliError>;
    let mut refreshes = 0u64;
    // registered now, so a Ctrl-C during a refresh still ends the loop (and restores the screen)
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| CliError::failed(format!("cannot catch Ctrl-C: {e}")))?;
    loop {
        let with_history = args.format == Format::Table;
        match refresh(config, &mut conn, args.group.as_deref(), with_history).await {
            Ok(snapshot) => {
                match args.format {
                    Format::Json => {
                        println!("{}", json_line(&snapshot.status));
                        let _ = std::io::stdout().flush();
                    }
                    Format::Table => {
                        let frame = format!(
                            "{}{}",
                            header(&args, live, colors),
                            render_frame(&snapshot, colors)
                        );
                        match &screen {
                            Some(s) => s.draw(&frame),
                            None => println!("{frame}"),
                        }
                    }
                }
                last_good = Some((snapshot, Instant::now()));
                last_error = None;
            }
            Err(e) => {
                match (&screen, &last_good) {
                    (Some(s), Some((snapshot, at))) => s.draw(&format!(
                        "{}{}\nretrying every {:.1} s; the last good view, {:.1} s old:\n\n{}",
                        header(&args, live, colors),
                        colors.paint(&e.message, "31;1"),
                        args.interval.as_secs_f64(),
                        at.elapsed().as_secs_f64(),
                        render_frame(snapshot, colors)
                    )),
                    (Some(s), None) => s.draw(&format!(
                        "{}{}\nretrying every {:.1} s\n",
                        header(&args, live, colors),
                        colors.paint(&e.message, "31;1"),
                        args.interval.as_secs_f64()
                    )),
                    (None, _) => eprintln!("drctl: {} (retrying)", e.message),
                }
                last_error = Some(e);
            }
        }
        refreshes += 1;
        if args.count.is_some_and(|n| refreshes >= n) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = interrupt.recv() => break,
        }
    }
    drop(screen);
    // a script that asked for N snapshots must know whether the last one is real
    match last_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_milliseconds_or_durations() {
        assert_eq!(parse_interval("500").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert!(
            parse_interval("10")
                .unwrap_err()
                .contains("at least 100 ms")
        );
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("").is_err());
    }
}
