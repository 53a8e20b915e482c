//! A reference-harness folder (`manifest.json` + `W{i}.npy` / `b{i}.npy`) through `Model::load`.
//!
//! The input packs the folder's files as records `[slot: u8][len: u32 LE][bytes]`; the slot picks
//! the file's name from `NAMES` (a fixed list, so the harness never writes outside its folder).
//! The files go into a folder of their own in /dev/shm, emptied before each input.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 9] = [
    "manifest.json",
    "W0.npy",
    "b0.npy",
    "W1.npy",
    "b1.npy",
    "W2.npy",
    "b2.npy",
    "W3.npy",
    "b3.npy",
];

fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(format!("/dev/shm/densebatch-fuzz-refbench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = folder();
    for name in NAMES {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let mut rest = data;
    while rest.len() >= 5 {
        let slot = rest[0] as usize % NAMES.len();
        let len = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let body = &rest[5..5 + len.min(rest.len() - 5)];
        std::fs::write(dir.join(NAMES[slot]), body).unwrap();
        rest = &rest[5 + body.len()..];
    }
    // A folder without manifest.json is another layout; give it an empty one so every input
    // reaches the reference-harness loader.
    if !dir.join("manifest.json").exists() {
        std::fs::write(dir.join("manifest.json"), b"").unwrap();
    }
    if let Ok(model) = densebatch::Model::load(dir) {
        let (json, weights) = model.to_bytes();
        assert_eq!(densebatch::Model::from_bytes(&json, &weights).unwrap(), model);
    }
});
