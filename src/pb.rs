//! Generated protobuf messages and the tonic service for `photoclaim.v1`,
//! with the encoded descriptor set served by reflection.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("photoclaim.v1");

/// Encoded `FileDescriptorSet` of `proto/` (and its imports), for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("photoclaim_descriptor");
