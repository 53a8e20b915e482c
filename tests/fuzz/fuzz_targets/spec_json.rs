//! The JSON spec (`model.json`), with the weights of the tiny model beside it: a spec that parses
//! and validates goes on through the size precheck and the tensor checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

const WEIGHTS: &[u8] = include_bytes!("../../../models/tiny-mlp/model.safetensors");

fuzz_target!(|spec_json: &[u8]| {
    if let Ok(model) = densebatch::Model::from_bytes(spec_json, WEIGHTS) {
        // Whatever loads must survive its own round trip.
        let (json, weights) = model.to_bytes();
        assert_eq!(densebatch::Model::from_bytes(&json, &weights).unwrap(), model);
    }
});
