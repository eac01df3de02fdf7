//! Connecting to a controller: try each configured address in turn; errors say what to check.

use std::time::Duration;

use dr_proto::MAX_MESSAGE_BYTES;
use dr_proto::pb::admin_client::AdminClient;
use dr_proto::tls::{TlsMaterial, host_of_url};
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

pub async fn connect(config: &DrctlConfig) -> Result<Connected, CliError> {
    let tls = match &config.tls {
        Some(paths) => Some(
            TlsMaterial::load(paths)
                .map_err(|e| CliError::config(format!("config {}: {e}", config.file.display())))?,
        ),
        None => None,
    };
    let mut failures = Vec::new();
    for url in &config.controllers {
        let mut endpoint = match Endpoint::from_shared(url.clone()) {
            Ok(e) => e
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(30)),
            Err(e) => {
                failures.push(format!("{url}: {e}"));
                continue;
            }
        };
        if let Some(tls) = &tls {
            let domain = host_of_url(url).unwrap_or("localhost");
            endpoint = match endpoint.tls_config(tls.client_config(domain)) {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("{url}: {}", chain(&e)));
                    continue;
                }
            };
        }
        match endpoint.connect().await {
            Ok(channel) => {
                return Ok(Connected {
                    admin: AdminClient::new(channel)
                        .max_decoding_message_size(4 * MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES),
                    url: url.clone(),
                });
            }
            Err(e) => failures.push(format!("{url}: {}", chain(&e))),
        }
    }
    Err(CliError::failed(format!(
        "controller unreachable ({}): is dr-controller running? check `controllers` in {}",
        failures.join("; "),
        config.file.display()
    )))
}

/// Turn a gRPC status into an operator-facing error.
pub fn status_error(url: &str, s: tonic::Status) -> CliError {
    use tonic::Code;
    let hint = match s.code() {
        Code::Unauthenticated | Code::PermissionDenied => {
            " (check the certificate in [tls] of your drctl config)"
        }
        Code::Unavailable => " (is the controller running and reachable?)",
        _ => "",
    };
    CliError::failed(format!("controller {url}: {}{hint}", s.message()))
}
