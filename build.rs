//! Compiles `proto/` with protox (a pure-Rust protobuf compiler: no system
//! `protoc` needed), writes the descriptor set that server reflection serves,
//! and generates the prost messages and tonic service.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "photoclaim/v1/resources.proto",
        "photoclaim/v1/claim_service.proto",
        "photoclaim/v1/admin_service.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("photoclaim_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Written by hand: a server sends claims it encoded earlier
        // (src/pb/image_match.rs).
        .extern_path(".photoclaim.v1.ImageMatch", "crate::pb::ImageMatch")
        .compile_fds(descriptors)?;
    Ok(())
}
