//! Wiring: bind the gRPC and HTTP listeners, serve until shutdown, end agent sessions cleanly.

use std::sync::Arc;
use std::time::Duration;

use dr_proto::MAX_MESSAGE_BYTES;
use dr_proto::identity::Permission;
use dr_proto::pb::admin_server::AdminServer;
use dr_proto::pb::agent_session_server::AgentSessionServer;
use dr_proto::pb::raft_server::RaftServer;
use dr_proto::tls::TlsMaterial;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

use crate::raft::service::RaftService;
use crate::service::Shared;
use crate::service::admin::AdminService;
use crate::service::agent_session::AgentSessionService;
use crate::service::auth::authorize;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} (config key `{key}`): {source}")]
    Bind {
        addr: std::net::SocketAddr,
        key: &'static str,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("gRPC server failed: {0}")]
    Grpc(String),
    #[error("HTTP server failed: {0}")]
    Http(String),
}

/// How long in-flight work gets after shutdown was requested before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub async fn serve(ctl: Arc<Shared>, tls: Option<&TlsMaterial>) -> Result<(), ServeError> {
    let config = &ctl.config;
    let grpc_listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.listen,
                key: "listen",
                source,
            })?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.http_listen,
            key: "http_listen",
            source,
        })?;
    let grpc_addr = grpc_listener.local_addr().ok();
    let http_addr = http_listener.local_addr().ok();

    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(2)))
        .http2_keepalive_timeout(Some(Duration::from_secs(4)))
        .max_concurrent_streams(Some(256));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls.server_config())
            .map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let agents = AgentSessionServer::new(AgentSessionService {
        shared: ctl.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = AdminServer::new(AdminService {
        shared: ctl.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(4 * MAX_MESSAGE_BYTES);
    // Raft messages carry log entries and snapshots: a larger limit than agents get, so the
    // caller is checked before its message is read (tonic decodes a unary request before the
    // handler runs; without this any certificate could make the controller buffer 64 MiB per
    // call). The handlers check again.
    let insecure_dev = ctl.insecure_dev;
    let raft = InterceptedService::new(
        RaftServer::new(RaftService::new(ctl.raft.raft.clone(), insecure_dev))
            .max_decoding_message_size(64 * MAX_MESSAGE_BYTES)
            .max_encoding_message_size(64 * MAX_MESSAGE_BYTES),
        move |request: tonic::Request<()>| {
            authorize(&request, Permission::Peer, insecure_dev).map(|_| request)
        },
    );

    let shutdown = ctl.shutdown.clone();
    let grpc = builder
        .add_service(agents)
        .add_service(admin)
        .add_service(raft)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc_listener),
            shutdown.clone().cancelled_owned(),
        );
    let http = axum::serve(http_listener, crate::http::router(ctl.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());

    tracing::info!(
        id = %ctl.id(),
        grpc = ?grpc_addr,
        http = ?http_addr,
        tls = tls.is_some(),
        "controller ready"
    );
    let servers = async {
        let (g, h) = tokio::join!(grpc, http);
        g.map_err(|e| ServeError::Grpc(e.to_string()))?;
        h.map_err(|e| ServeError::Http(e.to_string()))?;
        Ok::<(), ServeError>(())
    };
    tokio::pin!(servers);
    tokio::select! {
        r = &mut servers => r,
        () = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("shutdown grace period over; exiting with connections still open");
            Ok(())
        }
    }
}
