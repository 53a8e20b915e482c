//! A protobuf `ModelInferRequest`, as the gRPC infer call decodes it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = densebatch::fuzzing::decode_grpc_infer(data);
});
