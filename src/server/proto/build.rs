//! Generates the gRPC messages and service of the `server` feature from
//! `src/server/proto/inference.proto`, in pure Rust (protox parses the .proto; no `protoc`).
//! Without the feature it does nothing.

fn main() {
    #[cfg(feature = "server")]
    generate_grpc();
}

#[cfg(feature = "server")]
fn generate_grpc() {
    const PROTO: &str = "src/server/proto/inference.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["src/server/proto"]).unwrap_or_else(|e| {
        panic!("{PROTO}: {e}");
    });
    tonic_prost_build::configure()
        // The raw tensor fields arrive as `Bytes`: slices of the received buffer, no copy.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("{PROTO}: generating the gRPC code: {e}"));
}
