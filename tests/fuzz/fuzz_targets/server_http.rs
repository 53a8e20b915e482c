//! The body of an HTTP infer request, as all JSON and as a binary-extension body (the first two
//! bytes choose the length of its JSON header).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = densebatch::fuzzing::decode_http_infer(data, None);
    if let [a, b, rest @ ..] = data {
        let header_length = usize::from(u16::from_le_bytes([*a, *b]));
        let _ = densebatch::fuzzing::decode_http_infer(rest, Some(header_length));
    }
});
