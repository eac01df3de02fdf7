//! Compiles `proto/erlmcp_dr/v1/*.proto` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/erlmcp_dr/v1/common.proto",
        "proto/erlmcp_dr/v1/health.proto",
        "proto/erlmcp_dr/v1/agent.proto",
        "proto/erlmcp_dr/v1/admin.proto",
        "proto/erlmcp_dr/v1/raft.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
