//! The requests, encoded once before the run so the generator spends its time sending: one FP32
//! row per request, `rows` distinct rows used in turn.

use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

/// What the requests carry and how the body is encoded.
#[derive(Clone, Debug)]
pub struct PayloadSpec {
    /// Features per row.
    pub width: usize,
    /// Distinct rows to cycle through.
    pub rows: usize,
    /// The model's input tensor name.
    pub input_name: String,
    /// The model's output tensor name.
    pub output_name: String,
    /// The per-request `timeout` parameter (µs) to send, if any: the server's deadline.
    pub server_timeout_us: Option<u64>,
    /// Seed of the row values.
    pub seed: u64,
}

impl PayloadSpec {
    /// The rows, values uniform in [0, 1) like scaled pixels.
    pub fn row_values(&self) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        (0..self.rows)
            .map(|_| (0..self.width).map(|_| rng.random::<f32>()).collect())
            .collect()
    }

    /// The request-level parameters object, or `None` when there are none to send.
    fn parameters(&self) -> Option<serde_json::Value> {
        self.server_timeout_us.map(|us| json!({ "timeout": us }))
    }
}

/// An HTTP request body and, for the binary extension, the length of its JSON header.
#[derive(Clone, Debug)]
pub struct HttpBody {
    /// The whole body.
    pub bytes: Bytes,
    /// `Inference-Header-Content-Length` for the binary tensor extension; `None` for plain JSON.
    pub header_len: Option<usize>,
}

/// Bodies of Triton's binary tensor data extension: a JSON header, then the row's little-endian
/// f32 bytes; the output is asked for in binary too (what tritonclient sends by default).
pub fn binary_bodies(spec: &PayloadSpec) -> Vec<HttpBody> {
    spec.row_values()
        .iter()
        .map(|row| {
            let mut header = json!({
                "inputs": [{
                    "name": spec.input_name, "shape": [1, spec.width], "datatype": "FP32",
                    "parameters": { "binary_data_size": 4 * spec.width },
                }],
                "outputs": [{ "name": spec.output_name, "parameters": { "binary_data": true } }],
            });
            if let Some(parameters) = spec.parameters() {
                header["parameters"] = parameters;
            }
            let mut bytes = serde_json::to_vec(&header).expect("a JSON value serializes");
            let header_len = bytes.len();
            bytes.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            HttpBody {
                bytes: bytes.into(),
                header_len: Some(header_len),
            }
        })
        .collect()
}

/// Plain V2 JSON bodies (the `data` a flat list of numbers), answered in JSON.
pub fn json_bodies(spec: &PayloadSpec) -> Vec<HttpBody> {
    spec.row_values()
        .iter()
        .map(|row| {
            let mut body = json!({
                "inputs": [{
                    "name": spec.input_name, "shape": [1, spec.width], "datatype": "FP32",
                    "data": row,
                }],
            });
            if let Some(parameters) = spec.parameters() {
                body["parameters"] = parameters;
            }
            let bytes = serde_json::to_vec(&body).expect("a JSON value serializes");
            HttpBody {
                bytes: bytes.into(),
                header_len: None,
            }
        })
        .collect()
}

/// Whether a 200 reply is an inference answer: it names its outputs (in the JSON header of a
/// binary reply, or the JSON body).
pub fn looks_like_answer(body: &[u8]) -> bool {
    body.windows(b"\"outputs\"".len())
        .any(|w| w == b"\"outputs\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PayloadSpec {
        PayloadSpec {
            width: 3,
            rows: 2,
            input_name: "input".into(),
            output_name: "output".into(),
            server_timeout_us: Some(5000),
            seed: 1,
        }
    }

    #[test]
    fn a_binary_body_is_its_header_then_the_row_bytes() {
        let spec = spec();
        let rows = spec.row_values();
        let bodies = binary_bodies(&spec);
        assert_eq!(bodies.len(), 2);
        let body = &bodies[1];
        let header_len = body.header_len.unwrap();
        assert_eq!(body.bytes.len(), header_len + 12);
        let header: serde_json::Value = serde_json::from_slice(&body.bytes[..header_len]).unwrap();
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 12);
        assert_eq!(header["inputs"][0]["shape"], json!([1, 3]));
        assert_eq!(header["parameters"]["timeout"], 5000);
        let tail: Vec<f32> = body.bytes[header_len..]
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(tail, rows[1]);
    }

    #[test]
    fn a_json_body_carries_the_row_exactly() {
        let spec = spec();
        let body = &json_bodies(&spec)[0];
        assert_eq!(body.header_len, None);
        let value: serde_json::Value = serde_json::from_slice(&body.bytes).unwrap();
        let data: Vec<f32> = serde_json::from_value(value["inputs"][0]["data"].clone()).unwrap();
        assert_eq!(data, spec.row_values()[0]);
    }

    #[test]
    fn answers_are_told_from_error_bodies() {
        assert!(looks_like_answer(br#"{"model_name":"m","outputs":[]}"#));
        assert!(!looks_like_answer(br#"{"error":"queue full"}"#));
    }
}
