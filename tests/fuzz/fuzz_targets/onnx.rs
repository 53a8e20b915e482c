//! ONNX bytes through `import_onnx_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = densebatch::import_onnx_bytes(data) {
        let (json, weights) = model.to_bytes();
        assert_eq!(densebatch::Model::from_bytes(&json, &weights).unwrap(), model);
    }
});
