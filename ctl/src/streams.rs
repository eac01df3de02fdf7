//! drctl commands that stream from an agent: `logs` and `diag`.

use std::io::Write;
use std::path::Path;

use dr_proto::pb;

use crate::client::{Connected, status_error};
use crate::error::{CliError, CliResult};

pub async fn logs(
    conn: &mut Connected,
    group: &str,
    host: &str,
    lines: u32,
    grep: Option<&str>,
    follow: bool,
) -> CliResult {
    let mut stream = conn
        .admin
        .logs(pb::LogsRequest {
            group: group.into(),
            host: host.into(),
            lines,
            grep: grep.unwrap_or_default().into(),
            follow,
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| status_error(&conn.url, s))?
    {
        stdout
            .write_all(&chunk.data)
            .map_err(|e| CliError::failed(format!("stdout: {e}")))?;
        let _ = stdout.flush();
    }
    Ok(())
}

pub async fn diag(
    conn: &mut Connected,
    group: &str,
    host: &str,
    log_mib: u32,
    out: &Path,
) -> CliResult {
    let mut stream = conn
        .admin
        .diagnostics(pb::DiagnosticsRequest {
            group: group.into(),
            host: host.into(),
            log_mib,
        })
        .await
        .map_err(|s| status_error(&conn.url, s))?
        .into_inner();
    let tmp = out.with_extension("partial");
    let mut f = std::fs::File::create(&tmp)
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", tmp.display())))?;
    let mut total = 0usize;
    let result = async {
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| status_error(&conn.url, s))?
        {
            total += chunk.data.len();
            f.write_all(&chunk.data)
                .map_err(|e| CliError::failed(format!("cannot write {}: {e}", tmp.display())))?;
        }
        f.sync_all()
            .map_err(|e| CliError::failed(format!("cannot write {}: {e}", tmp.display())))?;
        Ok::<(), CliError>(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out)
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", out.display())))?;
    println!(
        "wrote {} ({total} bytes); read it with: zstd -dc {} | tar -tv",
        out.display(),
        out.display()
    );
    Ok(())
}
