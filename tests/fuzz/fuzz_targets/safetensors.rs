//! Safetensors weights through `Model::from_bytes`. The input is a spec and a weights file split at
//! the first NUL byte (JSON holds none); an input without one is weights for the tiny model's spec.
#![no_main]

use libfuzzer_sys::fuzz_target;

const SPEC: &[u8] = include_bytes!("../../../models/tiny-mlp/model.json");

fuzz_target!(|data: &[u8]| {
    let (spec, weights) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (SPEC, data),
    };
    if let Ok(model) = densebatch::Model::from_bytes(spec, weights) {
        let (json, weights) = model.to_bytes();
        assert_eq!(densebatch::Model::from_bytes(&json, &weights).unwrap(), model);
    }
});
