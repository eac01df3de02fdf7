//! Benchmark of the backup engine against the runbook's tools, printing a table.
//!
//! ```text
//! cargo run --release -p dr-backup --bin dr-backup-bench -- --work-dir /dev/shm/drb [--mib 256] [--runs 3]
//! ```
//!
//! Data comes from `../shared/bench/make-dataset.py` (override with `--dataset-script`). Each run
//! measures, alternating: our full backup, `tar -czf`, `tar | zstd -3 -T0 | tee >(sha256sum)`, our
//! restore (with verification), `zstd -dc | tar -x`, an incremental after changing 1% of the
//! files, and a restore of that chain (full + incremental). Our operations run as child processes
//! of this binary so their peak RSS (VmHWM) is measured alone. Ratios are computed within each
//! run, then the median is printed.
//!
//! The incremental is measured two ways: as the agent takes it (a process that keeps a change
//! journal took the full backup, then the incremental after the change), and walking every file
//! (what the standalone command and the first incremental after an agent restart do). Their
//! ratio to the full backup uses each process's own timing of the operation (no start-up).

use std::error::Error;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use dr_backup::restore::{RestoreOptions, RestoreRequest, restore_chain};
use dr_backup::store::FileStore;
use dr_backup::{BackupMode, BackupOptions, BackupRequest, ChangeJournal, TreeScan, create_backup};

type Res<T> = Result<T, Box<dyn Error>>;

const GROUP: &str = "bench";
const HOST: &str = "host1";

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("child-backup") => child_backup(&args[1..]),
        Some("child-restore") => child_restore(&args[1..]),
        Some("child-journal") => child_journal(&args[1..]),
        _ => bench(&args),
    }
}

/// Peak RSS of this process so far, from /proc (the same number getrusage's ru_maxrss gives).
fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn child_backup(args: &[String]) -> Res<()> {
    let [store, data, kind] = args else {
        return Err("child-backup STORE DATA full|incremental".into());
    };
    let store = FileStore::new(store);
    let mode = if kind == "incremental" {
        BackupMode::Incremental { parent: None }
    } else {
        BackupMode::Full
    };
    let req = BackupRequest {
        data_dir: Path::new(data),
        group: GROUP,
        host: HOST,
        mode,
        options: BackupOptions::default(),
        progress: None,
        journal: None,
    };
    let report = create_backup(&store, &req)?;
    println!(
        "archived_bytes={} elapsed_s={} peak_rss_kib={}",
        report.header.totals.archived_file_bytes,
        report.elapsed.as_secs_f64(),
        peak_rss_kib()
    );
    Ok(())
}

/// As the agent runs: a change journal on the data directory, a full backup, then (when a line
/// arrives on stdin, after the parent changed the files) an incremental guided by the journal.
fn child_journal(args: &[String]) -> Res<()> {
    let [store, data] = args else {
        return Err("child-journal STORE DATA".into());
    };
    let store = FileStore::new(store);
    let journal = ChangeJournal::start(Path::new(data))?;
    let req = |mode| BackupRequest {
        data_dir: Path::new(data),
        group: GROUP,
        host: HOST,
        mode,
        options: BackupOptions::default(),
        progress: None,
        journal: Some(&journal),
    };
    create_backup(&store, &req(BackupMode::Full))?;
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let report = create_backup(&store, &req(BackupMode::Incremental { parent: None }))?;
    let TreeScan::Journal { changed_paths } = report.scan else {
        return Err(format!("the journal was not used: {:?}", report.scan).into());
    };
    println!(
        "archived_bytes={} elapsed_s={} changed_paths={changed_paths} peak_rss_kib={}",
        report.header.totals.archived_file_bytes,
        report.elapsed.as_secs_f64(),
        peak_rss_kib()
    );
    Ok(())
}

fn child_restore(args: &[String]) -> Res<()> {
    let [store, staging, data] = args else {
        return Err("child-restore STORE STAGING DATA".into());
    };
    let store = FileStore::new(store);
    let req = RestoreRequest {
        group: GROUP,
        host: HOST,
        backup: None,
        staging: Path::new(staging),
        data_dir: Path::new(data),
        options: RestoreOptions::default(),
        progress: None,
    };
    let report = restore_chain(&store, &req)?;
    println!("files={} peak_rss_kib={}", report.files, peak_rss_kib());
    Ok(())
}

struct Opts {
    work: PathBuf,
    mib: u32,
    runs: usize,
    script: PathBuf,
}

fn parse(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        work: PathBuf::new(),
        mib: 256,
        runs: 3,
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/make-dataset.py"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--work-dir" => o.work = PathBuf::from(val()?),
            "--mib" => o.mib = val()?.parse()?,
            "--runs" => o.runs = val()?.parse()?,
            "--dataset-script" => o.script = PathBuf::from(val()?),
            other => return Err(format!("unknown argument {other:?}; usage: --work-dir DIR (tmpfs, e.g. /dev/shm/x) [--mib 256] [--runs 3] [--dataset-script PATH]").into()),
        }
    }
    if o.work.as_os_str().is_empty() {
        return Err("--work-dir DIR is required (use a tmpfs such as /dev/shm/drb)".into());
    }
    Ok(o)
}

fn sh(script: &str) -> Res<f64> {
    let t = Instant::now();
    let st = Command::new("bash").arg("-c").arg(script).status()?;
    if !st.success() {
        return Err(format!("`{script}` failed: {st}").into());
    }
    Ok(t.elapsed().as_secs_f64())
}

/// A `key=value` number from a child's output.
fn field(text: &str, key: &str) -> Option<f64> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Runs this binary as a child; returns seconds, the child's peak RSS and its own timing of
/// the operation (`elapsed_s`, without process start-up; the wall time if it printed none).
fn ours_timed(args: &[&str]) -> Res<(f64, u64, f64)> {
    let t = Instant::now();
    let out = Command::new(std::env::current_exe()?).args(args).output()?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rss = field(&text, "peak_rss_kib").unwrap_or(0.0) as u64;
    Ok((secs, rss, field(&text, "elapsed_s").unwrap_or(secs)))
}

/// A journal child between its full backup and its incremental.
struct JournalChild(std::process::Child, BufReader<std::process::ChildStdout>);

impl JournalChild {
    fn start(store: &str, data: &str) -> Res<JournalChild> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["child-journal", store, data])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.wait();
            return Err(format!("journal child: {line:?}").into());
        }
        Ok(JournalChild(child, out))
    }

    /// Lets it take the incremental; returns its own timing and how many paths it looked at.
    fn incremental(mut self) -> Res<(f64, f64)> {
        self.0.stdin.take().ok_or("no stdin")?.write_all(b"go\n")?;
        let mut text = String::new();
        self.1.read_line(&mut text)?;
        let st = self.0.wait()?;
        if !st.success() {
            return Err(format!("journal child failed: {st}").into());
        }
        let elapsed = field(&text, "elapsed_s").ok_or("journal child printed no timing")?;
        Ok((elapsed, field(&text, "changed_paths").unwrap_or(0.0)))
    }
}

/// Runs this binary as a child; returns seconds and the child's peak RSS.
fn ours(args: &[&str]) -> Res<(f64, u64)> {
    let (secs, rss, _) = ours_timed(args)?;
    Ok((secs, rss))
}

fn reset(dir: &Path) -> Res<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    Ok(())
}

/// Appends to 1% of the files, picked at random (seeded per run) so the changed bytes are a
/// fair sample. Returns how many files and bytes they hold.
fn touch_one_percent(data: &Path, run: usize) -> Res<(usize, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files.sort();
    let mut rng = fastrand::Rng::with_seed(0xd15c + run as u64);
    let (mut n, mut bytes) = (0, 0);
    for f in &files {
        if rng.usize(0..100) != 0 {
            continue;
        }
        let mut body = fs::read(f)?;
        body.extend_from_slice(format!("\n#run{run}").as_bytes());
        bytes += body.len() as u64;
        fs::write(f, body)?;
        n += 1;
    }
    Ok((n, bytes))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[derive(Default)]
struct Samples {
    ours_backup: Vec<f64>,
    targz: Vec<f64>,
    tarzstd: Vec<f64>,
    ours_restore: Vec<f64>,
    untar: Vec<f64>,
    ours_incr: Vec<f64>,
    ours_journal: Vec<f64>,
    r_journal_vs_full: Vec<f64>,
    ours_chain_restore: Vec<f64>,
    r_backup_vs_targz: Vec<f64>,
    r_backup_vs_tarzstd: Vec<f64>,
    r_restore_vs_untar: Vec<f64>,
    r_incr_vs_full: Vec<f64>,
    r_chain_vs_untar: Vec<f64>,
    rss_backup: u64,
    rss_restore: u64,
    rss_incr: u64,
    rss_chain_restore: u64,
}

fn bench(args: &[String]) -> Res<()> {
    let o = parse(args)?;
    fs::create_dir_all(&o.work)?;
    let data = o.work.join("data");
    let marker = o.work.join(format!("data-{}.ok", o.mib));
    if !marker.exists() {
        reset(&data)?;
        eprintln!("generating {} MiB dataset in {}", o.mib, data.display());
        let st = Command::new("python3")
            .arg(&o.script)
            .arg(&data)
            .arg("--mib")
            .arg(o.mib.to_string())
            .status()?;
        if !st.success() {
            return Err(format!("{} failed", o.script.display()).into());
        }
        fs::write(&marker, "")?;
    }
    let w = |p: &str| o.work.join(p).display().to_string();
    let d = data.display().to_string();
    let mut s = Samples::default();
    for run in 0..o.runs {
        eprintln!("run {}/{}", run + 1, o.runs);
        reset(&o.work.join("store"))?;
        let (b, rss, b_own) = ours_timed(&["child-backup", &w("store"), &d, "full"])?;
        s.rss_backup = s.rss_backup.max(rss);
        let tgz = sh(&format!("tar -czf {} -C {d} .", w("out.tgz")))?;
        let tzs = sh(&format!(
            "tar -cf - -C {d} . | zstd -3 -T0 -q | tee >(sha256sum > {}) > {}",
            w("out.sum"),
            w("out.tar.zst")
        ))?;
        reset(&o.work.join("restore"))?;
        let (r, rss) = ours(&[
            "child-restore",
            &w("store"),
            &w("restore/staging"),
            &w("restore/data"),
        ])?;
        s.rss_restore = s.rss_restore.max(rss);
        reset(&o.work.join("untar"))?;
        let u = sh(&format!(
            "zstd -dc -q {} | tar -xf - -C {}",
            w("out.tar.zst"),
            w("untar")
        ))?;
        reset(&o.work.join("store-j"))?;
        let journal = JournalChild::start(&w("store-j"), &d)?;
        let (changed, changed_bytes) = touch_one_percent(&data, run)?;
        let (i, rss, i_own) = ours_timed(&["child-backup", &w("store"), &d, "incremental"])?;
        let (j_own, looked) = journal.incremental()?;
        s.rss_incr = s.rss_incr.max(rss);
        reset(&o.work.join("restore"))?;
        let (c, rss) = ours(&[
            "child-restore",
            &w("store"),
            &w("restore/staging"),
            &w("restore/data"),
        ])?;
        s.rss_chain_restore = s.rss_chain_restore.max(rss);
        eprintln!(
            "  backup {b:.2}s  tar-czf {tgz:.2}s  tar|zstd {tzs:.2}s  restore {r:.2}s  untar {u:.2}s  incremental ({changed} files, {:.1} MiB) {i:.2}s (own {i_own:.3}s; with journal {j_own:.3}s, {looked} paths)  chain restore {c:.2}s",
            changed_bytes as f64 / 1_048_576.0
        );
        s.ours_journal.push(j_own);
        s.r_journal_vs_full.push(j_own / b_own);
        s.ours_backup.push(b);
        s.targz.push(tgz);
        s.tarzstd.push(tzs);
        s.ours_restore.push(r);
        s.untar.push(u);
        s.ours_incr.push(i);
        s.ours_chain_restore.push(c);
        s.r_chain_vs_untar.push(c / u);
        s.r_backup_vs_targz.push(tgz / b);
        s.r_backup_vs_tarzstd.push(b / tzs);
        s.r_restore_vs_untar.push(r / u);
        s.r_incr_vs_full.push(i_own / b_own);
    }
    for p in [
        "store",
        "store-j",
        "restore",
        "untar",
        "out.tgz",
        "out.tar.zst",
        "out.sum",
    ] {
        let p = o.work.join(p);
        let _ = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
    }
    print_table(&o, &s);
    Ok(())
}

fn print_table(o: &Opts, s: &Samples) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "dataset: make-dataset.py --mib {} on {}; {} alternating runs, medians; load average at the end: {}",
        o.mib,
        o.work.display(),
        o.runs,
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("| operation | median time | comparison (median of per-run ratios) | target | met |");
    println!("|---|---|---|---|---|");
    let row = |op: &str, t: f64, cmp: String, target: &str, ok: bool| {
        println!(
            "| {op} | {t:.2} s | {cmp} | {target} | {} |",
            if ok { "yes" } else { "NO" }
        );
    };
    let r1 = median(s.r_backup_vs_targz.clone());
    let r2 = median(s.r_backup_vs_tarzstd.clone());
    let r3 = median(s.r_restore_vs_untar.clone());
    let r4 = median(s.r_incr_vs_full.clone());
    row(
        "dr-backup full backup",
        median(s.ours_backup.clone()),
        format!("{r1:.1}× faster than tar -czf"),
        "≥ 5×",
        r1 >= 5.0,
    );
    row(
        "",
        median(s.ours_backup.clone()),
        format!("{r2:.2}× tar \\| zstd -3 -T0 + sha256"),
        "≤ 1.1×",
        r2 <= 1.1,
    );
    row(
        "tar -czf",
        median(s.targz.clone()),
        "baseline".into(),
        "",
        true,
    );
    row(
        "tar -cf - \\| zstd -3 -T0 \\| tee >(sha256sum)",
        median(s.tarzstd.clone()),
        "baseline".into(),
        "",
        true,
    );
    row(
        "dr-backup restore (verified)",
        median(s.ours_restore.clone()),
        format!("{r3:.2}× zstd -dc \\| tar -x"),
        "≤ 1.0×",
        r3 <= 1.0,
    );
    row(
        "zstd -dc \\| tar -x",
        median(s.untar.clone()),
        "baseline".into(),
        "",
        true,
    );
    let r5 = median(s.r_chain_vs_untar.clone());
    let r6 = median(s.r_journal_vs_full.clone());
    row(
        "dr-backup incremental (1% changed), agent with its change journal",
        median(s.ours_journal.clone()),
        format!("{:.1}% of the full backup", r6 * 100.0),
        "≤ 10%",
        r6 <= 0.10,
    );
    println!(
        "| dr-backup incremental (1% changed), walking every file (no journal: standalone, first after a restart) | {:.2} s | {:.1}% of the full backup | — | — |",
        median(s.ours_incr.clone()),
        r4 * 100.0
    );
    println!(
        "| dr-backup restore of full + incremental (verified) | {:.2} s | {r5:.2}× zstd -dc \\| tar -x | — | — |",
        median(s.ours_chain_restore.clone())
    );
    println!();
    println!("| peak RSS (VmHWM of the child process) | MiB | target | met |");
    println!("|---|---|---|---|");
    for (op, kib) in [
        ("full backup", s.rss_backup),
        ("restore", s.rss_restore),
        ("incremental", s.rss_incr),
        ("restore of full + incremental", s.rss_chain_restore),
    ] {
        println!(
            "| {op} | {:.1} | ≤ 64 | {} |",
            mib(kib),
            if mib(kib) <= 64.0 { "yes" } else { "NO" }
        );
    }
}
