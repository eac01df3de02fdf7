//! Connecting to a controller: try each configured address in turn, then follow the controller
//! cluster's leader; errors say what to check.

use std::time::Duration;

use dr_proto::pb::admin_client::AdminClient;
use dr_proto::tls::{TlsMaterial, host_of_url};
use dr_proto::{MAX_MESSAGE_BYTES, pb};
use tonic::transport::{Channel, Endpoint};

use crate::config::DrctlConfig;
use crate::error::CliError;

pub struct Connected {
    pub admin: AdminClient<Channel>,
    pub url: String,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg = format!("{msg}: {s_msg}");
        }
        src = s.source();
    }
    msg
}

/// Connect to the first reachable configured controller, then to the controller cluster's
/// leader if that one is not it (only the leader decides; any controller answers
/// `controller status`). Without a known leader, stay: reads still work, actions say why not.
pub async fn connect(config: &DrctlConfig) -> Result<Connected, CliError> {
    connect_with(config, true).await
}

/// The first reachable configured controller, whether or not it leads (`controller status`
/// shows that controller's own view).
pub async fn connect_any(config: &DrctlConfig) -> Result<Connected, CliError> {
    connect_with(config, false).await
}

async fn connect_with(config: &DrctlConfig, follow_leader: bool) -> Result<Connected, CliError> {
    let tls = match &config.tls {
        Some(paths) => Some(
            TlsMaterial::load(paths)
                .map_err(|e| CliError::config(format!("config {}: {e}", config.file.display())))?,
        ),
        None => None,
    };
    let mut failures = Vec::new();
    for url in &config.controllers {
        match dial(url, tls.as_ref()).await {
            Ok(mut conn) => {
                if follow_leader && let Some(leader) = leader_elsewhere(&mut conn).await {
                    match dial(&leader, tls.as_ref()).await {
                        Ok(l) => return Ok(l),
                        Err(e) => tracing_free_note(&format!(
                            "the leader {leader} is unreachable ({e}); using {url}"
                        )),
                    }
                }
                return Ok(conn);
            }
            Err(e) => failures.push((url.as_str(), e)),
        }
    }
    Err(unreachable(&config.file, &failures))
}

/// "controller unreachable at ADDR (why): what to check next".
fn unreachable(file: &std::path::Path, failures: &[(&str, String)]) -> CliError {
    let at = failures
        .iter()
        .map(|(url, e)| format!("{url} ({e})"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = failures
        .iter()
        .find_map(|(_, e)| dial_hint(e, file))
        .unwrap_or_else(|| {
            format!(
                "is dr-controller running there? check `controllers` in {}, or point drctl at \
                 another installation with drctl --config FILE (or DRCTL_CONFIG)",
                file.display()
            )
        });
    CliError::failed(format!("controller unreachable at {at}: {hint}"))
}

/// What to do about a dial error that is not simply "nothing listens there".
fn dial_hint(error: &str, file: &std::path::Path) -> Option<String> {
    let file = file.display();
    let e = error.to_ascii_lowercase();
    if e.contains("unknownissuer") || e.contains("badsignature") {
        return Some(format!(
            "the controller's certificate is not from the CA in [tls] ca of {file}: \
             drctl and the controller must use the same `drctl pki init` directory"
        ));
    }
    if e.contains("notvalidforname") {
        return Some(format!(
            "the controller's certificate is not valid for that address: use the name it was \
             issued for in `controllers`, or set [tls] server_name in {file}"
        ));
    }
    if e.contains("expired") {
        return Some(format!(
            "a certificate has expired: issue new ones (drctl pki issue) and update {file}"
        ));
    }
    if e.contains("dns error") || e.contains("failed to lookup") {
        return Some(format!(
            "cannot resolve that name: check `controllers` in {file}"
        ));
    }
    if e.contains("timed out") || e.contains("deadline") {
        return Some(format!(
            "no answer within 3 s: is the address right, and is port 7400 (or the one in \
             `controllers` of {file}) open between here and the controller?"
        ));
    }
    None
}

/// A note on stderr (never on stdout, which may be JSON).
fn tracing_free_note(text: &str) {
    eprintln!("drctl: {text}");
}

/// The leader's URL if the controller behind `conn` knows one that is not itself.
async fn leader_elsewhere(conn: &mut Connected) -> Option<String> {
    let s = conn
        .admin
        .controller_status(pb::ControllerStatusRequest {})
        .await
        .ok()?
        .into_inner();
    (!s.answered_by_leader && !s.leader_addr.is_empty() && s.leader_addr != conn.url)
        .then_some(s.leader_addr)
}

async fn dial(url: &str, tls: Option<&TlsMaterial>) -> Result<Connected, String> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30));
    if let Some(tls) = tls {
        let domain = host_of_url(url).unwrap_or("localhost");
        endpoint = endpoint
            .tls_config(tls.client_config(domain))
            .map_err(|e| chain(&e))?;
    }
    let channel = endpoint.connect().await.map_err(|e| chain(&e))?;
    Ok(Connected {
        admin: AdminClient::new(channel)
            .max_decoding_message_size(4 * MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        url: url.to_string(),
    })
}

/// Turn a gRPC status into an operator-facing error.
pub fn status_error(url: &str, s: tonic::Status) -> CliError {
    use tonic::Code;
    let hint = match s.code() {
        Code::PermissionDenied => {
            " (acting needs an operator certificate: set [tls] cert and key in your drctl config \
             to an operator-NAME.pem from drctl pki)"
        }
        Code::Unauthenticated => {
            " (check [tls] in your drctl config: the certificate must come from this \
             installation's CA)"
        }
        Code::DeadlineExceeded => " (no answer in 30 s: see drctl status and the controller log)",
        Code::Unavailable
            if s.message().contains("not the leader") || s.message().contains("not deciding") =>
        {
            ""
        }
        Code::Unavailable if s.message().contains("no live session") => {
            " (is dr-agent running on that host and connected? drctl status shows when it last \
             reported)"
        }
        Code::Unavailable
            if s.message().contains("transport") || s.message().contains("connect") =>
        {
            " (is the controller running and reachable?)"
        }
        _ => "",
    };
    CliError::failed(format!("controller {url}: {}{hint}", s.message()))
}
