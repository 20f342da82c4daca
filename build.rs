//! Compiles `proto/` with protox (a pure-Rust protobuf compiler: no system
//! `protoc` needed), writes the descriptor set that server reflection serves,
//! and generates the prost messages and tonic service.
//!
//! The services use our codec (`src/api/codec.rs`), which answers a request
//! body that does not decode with INVALID_ARGUMENT instead of tonic-prost's
//! INTERNAL; it identifies the request by its `prost::Name`, so the messages
//! are generated with type names.

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
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Written by hand: a server sends claims it encoded earlier
        // (src/pb/image_match.rs).
        .extern_path(".photoclaim.v1.ImageMatch", "crate::pb::ImageMatch")
        .codec_path("crate::api::codec::ProtoCodec")
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
