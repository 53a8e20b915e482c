//! Every model loader on damaged copies of valid files: the result is a model or a typed error,
//! never a panic. Proptest mutates real files the way the fuzz targets (tests/fuzz) do, in a few
//! hundred cases per `cargo test`.

mod common;

use densebatch::{Activation, Model};
use proptest::prelude::*;

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    /// Overwrite the byte at (position modulo length).
    Set(usize, u8),
    /// Insert bytes at a position.
    Insert(usize, Vec<u8>),
    /// Remove up to `n` bytes from a position.
    Remove(usize, usize),
    /// Cut the input at a position.
    Truncate(usize),
    /// Write a little-endian u64 at a position (a length or offset field gone wrong).
    Word(usize, u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(p, n)| Edit::Remove(p, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), prop_oneof![any::<u64>(), 0u64..4096, Just(u64::MAX)])
            .prop_map(|(p, w)| Edit::Word(p, w)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
        match e {
            Edit::Set(p, b) if !bytes.is_empty() => {
                let i = at(*p, bytes.len());
                bytes[i] = *b;
            }
            Edit::Set(..) => {}
            Edit::Insert(p, b) => {
                let i = at(*p, bytes.len() + 1);
                bytes.splice(i..i, b.iter().copied());
            }
            Edit::Remove(p, n) if !bytes.is_empty() => {
                let i = at(*p, bytes.len());
                let j = (i + n).min(bytes.len());
                bytes.drain(i..j);
            }
            Edit::Remove(..) => {}
            Edit::Truncate(p) => {
                let i = at(*p, bytes.len() + 1);
                bytes.truncate(i);
            }
            Edit::Word(p, w) if bytes.len() >= 8 => {
                let i = at(*p, bytes.len() - 7);
                bytes[i..i + 8].copy_from_slice(&w.to_le_bytes());
            }
            Edit::Word(..) => {}
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(edit(), 1..6)
}

/// A small model in our format, and its ONNX and reference-harness forms come from the files.
fn valid_model() -> Model {
    Model::random(&[6, 5, 3], Activation::Relu, Activation::Softmax, 3)
}

/// A loaded model must be whole: it survives its own round trip.
fn check_loaded(result: densebatch::Result<Model>) {
    match result {
        Ok(model) => {
            let (json, weights) = model.to_bytes();
            assert_eq!(Model::from_bytes(&json, &weights).unwrap(), model);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn damaged_spec_json(edits in edits()) {
        let (json, weights) = valid_model().to_bytes();
        check_loaded(Model::from_bytes(&apply(json, &edits), &weights));
    }

    #[test]
    fn damaged_safetensors(edits in edits()) {
        let (json, weights) = valid_model().to_bytes();
        check_loaded(Model::from_bytes(&json, &apply(weights, &edits)));
    }

    #[test]
    fn damaged_npy(edits in edits(), which in 0usize..4) {
        let Some(dir) = common::refbench_models("damaged_npy") else { return Ok(()) };
        let name = ["W0.npy", "b0.npy", "W1.npy", "b1.npy"][which];
        let bytes = std::fs::read(dir.join("tiny-mlp").join(name)).unwrap();
        if let Ok(a) = densebatch::fuzzing::read_npy_f32(&apply(bytes, &edits)) {
            prop_assert!(!a.shape().is_empty() || a.len() == 1);
        }
    }

    #[test]
    fn damaged_onnx(edits in edits()) {
        let Some(dir) = common::refbench_models("damaged_onnx") else { return Ok(()) };
        let bytes = std::fs::read(dir.join("tiny-mlp/model.onnx")).unwrap();
        check_loaded(densebatch::import_onnx_bytes(&apply(bytes, &edits)));
    }
}

proptest! {
    // Each case writes a folder: fewer of them.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_reference_harness_folder(edits in edits(), which in 0usize..5) {
        let Some(models) = common::refbench_models("damaged_reference_harness_folder") else {
            return Ok(());
        };
        let tmp = common::TempDir::new("damaged-refbench");
        let names = ["manifest.json", "W0.npy", "b0.npy", "W1.npy", "b1.npy"];
        for name in names {
            std::fs::copy(models.join("tiny-mlp").join(name), tmp.path(name)).unwrap();
        }
        let victim = tmp.path(names[which]);
        let bytes = std::fs::read(&victim).unwrap();
        std::fs::write(&victim, apply(bytes, &edits)).unwrap();
        check_loaded(Model::load(tmp.path("")));
    }
}

/// Inputs the `npy` fuzz target found to crash the loader (tests/fixtures/fuzz/npy): each is a
/// typed format error now.
#[test]
fn fuzz_crash_inputs_of_the_npy_reader_are_format_errors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz/npy");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let err = densebatch::fuzzing::read_npy_f32(&bytes).unwrap_err();
        assert!(matches!(err, densebatch::Error::Format { .. }), "{err}");
        replayed += 1;
    }
    assert!(replayed > 0, "no inputs under {}", dir.display());
}
