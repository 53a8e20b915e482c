//! The CLI's input files (`densebatch run`): CSV, and its own `.npy` and `.safetensors` row readers.
//! The CLI's io module is included by path, so the library does not depend on csv or npyz.
//! The first byte picks the kind; the rest is the file, written to /dev/shm and read to its end.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unreachable_pub)]
#[path = "../../../src/bin/densebatch/io/mod.rs"]
mod io;

fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(format!("/dev/shm/densebatch-fuzz-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// Widest row the harness reads: `densebatch run` refuses a width other than the model's before
/// it reads a row, and no model of ours is wider.
const MAX_COLS: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, file)) = data.split_first() else {
        return;
    };
    let ext = ["csv", "npy", "safetensors"][kind as usize % 3];
    let path = folder().join(format!("input.{ext}"));
    std::fs::write(&path, file).unwrap();
    let Ok(mut source) = io::open_source(&path, None) else {
        return;
    };
    let cols = source.cols();
    if cols == 0 || cols > MAX_COLS {
        return;
    }
    let mut buf = vec![0f32; cols * 4];
    while let Ok(rows) = source.read_rows(&mut buf) {
        if rows == 0 {
            break;
        }
        assert!(rows <= 4);
    }
});
