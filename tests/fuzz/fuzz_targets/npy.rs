//! A float32 `.npy` file as the reference-harness loader reads `W{i}.npy` / `b{i}.npy`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = densebatch::fuzzing::read_npy_f32(data) {
        // A parsed array holds exactly the bytes after its header.
        assert!(array.len() * 4 <= data.len());
    }
});
