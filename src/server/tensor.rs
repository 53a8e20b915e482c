//! Decoding inference requests and encoding replies: the JSON body, Triton's binary tensor
//! extension (a JSON header, then raw little-endian tensors) and the numbers themselves.
//! Everything here is pure (no I/O) so that malformed input is tested without a socket: each
//! failure is an [`ApiError::BadRequest`] (or `Unimplemented`) naming what is wrong.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use ndarray::Array2;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::error::ApiError;

/// The only datatype a dense model takes and gives.
pub(crate) const FP32: &str = "FP32";
/// The name of every model's input tensor.
pub(crate) const INPUT_NAME: &str = "input";
/// The name of every model's output tensor.
pub(crate) const OUTPUT_NAME: &str = "output";

/// A decoded inference request, whichever protocol it came by.
#[derive(Debug)]
pub(crate) struct InferInput {
    /// The client's request id, echoed in the reply.
    pub(crate) id: Option<String>,
    /// The rows, `[rows, width]`.
    pub(crate) rows: Array2<f32>,
    /// The input came as one sample `[W]`: the output is `[O]`, not `[1, O]`.
    pub(crate) single: bool,
    /// The client's own deadline (`timeout` parameter, µs).
    pub(crate) timeout: Option<Duration>,
    /// Whether the output goes back as raw bytes (binary extension) rather than JSON numbers.
    pub(crate) binary_output: bool,
}

/// Turns a tensor's `shape` into `(rows, width, single)` and checks it against `elements`.
pub(crate) fn rows_of(shape: &[i64], elements: usize) -> Result<(usize, usize, bool), ApiError> {
    let dim = |d: i64| {
        usize::try_from(d)
            .map_err(|_| ApiError::bad(format!("shape {shape:?} has a negative dimension")))
    };
    let (rows, width, single) = match shape {
        [w] => (1, dim(*w)?, true),
        [r, w] => (dim(*r)?, dim(*w)?, false),
        _ => {
            return Err(ApiError::bad(format!(
                "input shape {shape:?}: expected [rows, width] or [width]"
            )));
        }
    };
    let expected = rows
        .checked_mul(width)
        .ok_or_else(|| ApiError::bad(format!("input shape {shape:?} is too large")))?;
    if expected != elements {
        return Err(ApiError::bad(format!(
            "input shape {shape:?} needs {expected} elements, the data has {elements}"
        )));
    }
    Ok((rows, width, single))
}

/// Refuses every datatype but FP32, by name.
pub(crate) fn check_datatype(datatype: &str) -> Result<(), ApiError> {
    if datatype == FP32 {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "datatype {datatype} is not supported: the model takes {FP32}"
        )))
    }
}

/// Decodes little-endian f32s. Copies rather than casting in place: after a JSON header of any
/// length the bytes are not 4-byte aligned.
pub(crate) fn f32_from_le_bytes(bytes: &[u8]) -> Result<Vec<f32>, ApiError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(ApiError::bad(format!(
            "{} bytes of FP32 data is not a whole number of 4-byte values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The output's values as little-endian bytes, without a copy on little-endian machines.
pub(crate) fn le_bytes_of(output: Array2<f32>) -> Bytes {
    let (values, _) = output.into_raw_vec_and_offset();
    if cfg!(target_endian = "little") {
        Bytes::from_owner(F32Bytes(values))
    } else {
        Bytes::from(
            values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        )
    }
}

/// A `Vec<f32>` seen as its bytes (in memory order), so `Bytes` can own it without a copy.
struct F32Bytes(Vec<f32>);

impl AsRef<[u8]> for F32Bytes {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// A request's timeout parameter: tritonclient sends microseconds.
pub(crate) fn timeout_from_micros(micros: i128) -> Result<Duration, ApiError> {
    u64::try_from(micros)
        .map(Duration::from_micros)
        .map_err(|_| ApiError::bad(format!("timeout {micros} µs is not a non-negative integer")))
}

/// Parameters that ask for something a dense model served from a body cannot do.
pub(crate) fn check_unsupported_parameter(name: &str) -> Result<(), ApiError> {
    if name.starts_with("shared_memory") {
        Err(ApiError::Unimplemented(format!(
            "parameter {name}: shared-memory tensors are not supported; send the data in the request"
        )))
    } else if name.starts_with("sequence") {
        Err(ApiError::Unimplemented(format!(
            "parameter {name}: sequence batching is not supported (the models are stateless)"
        )))
    } else if name == "classification" {
        Err(ApiError::Unimplemented(
            "parameter classification: the classification extension is not supported".into(),
        ))
    } else {
        Ok(())
    }
}

// ---- HTTP / JSON ------------------------------------------------------------------------------

#[derive(Deserialize)]
struct JsonRequest<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(borrow)]
    inputs: Vec<JsonInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<JsonOutput>>,
}

#[derive(Deserialize)]
struct JsonInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    // Kept raw so the datatype is checked before the numbers are read.
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Decodes an HTTP infer body: all JSON, or (with `header_length`, from the
/// `Inference-Header-Content-Length` header) a JSON header followed by binary tensors.
pub(crate) fn decode_http(
    body: &Bytes,
    header_length: Option<usize>,
) -> Result<InferInput, ApiError> {
    let (json, mut binary) = match header_length {
        None => (&body[..], &body[..0]),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(ApiError::bad(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )));
        }
    };
    let request: JsonRequest<'_> = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad(format!("malformed inference request JSON: {e}")))?;
    let id = match request.id {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => return Err(ApiError::bad(format!("request id {other} is not a string"))),
    };
    let mut timeout = None;
    let mut binary_output = false;
    for (name, value) in &request.parameters {
        check_unsupported_parameter(name)?;
        match name.as_str() {
            "timeout" => {
                let micros = value
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| value.as_u64().map(i128::from))
                    .ok_or_else(|| {
                        ApiError::bad(format!("timeout {value} is not an integer (µs)"))
                    })?;
                timeout = Some(timeout_from_micros(micros)?);
            }
            "binary_data_output" => binary_output = bool_parameter(name, value)?,
            _ => {} // priority and the like: accepted, no effect on a dense model
        }
    }
    let [input] = &request.inputs[..] else {
        return Err(ApiError::bad(format!(
            "the model takes exactly one input tensor, the request has {}",
            request.inputs.len()
        )));
    };
    check_datatype(&input.datatype)?;
    let mut binary_size = None;
    for (name, value) in &input.parameters {
        check_unsupported_parameter(name)?;
        if name == "binary_data_size" {
            binary_size = Some(value.as_u64().ok_or_else(|| {
                ApiError::bad(format!(
                    "binary_data_size {value} is not a non-negative integer"
                ))
            })?);
        }
    }
    let values = match (binary_size, input.data) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(format!(
                "input {}: both binary_data_size and data are given",
                input.name
            )));
        }
        (Some(size), None) => {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > binary.len() {
                return Err(ApiError::bad(format!(
                    "input {}: binary_data_size {size} but only {} bytes follow the JSON header",
                    input.name,
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size);
            binary = rest;
            f32_from_le_bytes(mine)?
        }
        (None, Some(data)) => decode_json_numbers(data.get())?,
        (None, None) => {
            return Err(ApiError::bad(format!("input {}: no data", input.name)));
        }
    };
    if !binary.is_empty() {
        return Err(ApiError::bad(format!(
            "{} bytes after the JSON header belong to no input",
            binary.len()
        )));
    }
    if let Some(outputs) = &request.outputs {
        for output in outputs {
            if output.name != OUTPUT_NAME {
                return Err(ApiError::bad(format!(
                    "unknown output '{}': the model's output is '{OUTPUT_NAME}'",
                    output.name
                )));
            }
            for (name, value) in &output.parameters {
                check_unsupported_parameter(name)?;
                if name == "binary_data" {
                    binary_output = bool_parameter(name, value)?;
                }
            }
        }
    }
    let (rows, width, single) = rows_of(&input.shape, values.len())?;
    let rows = Array2::from_shape_vec((rows, width), values)
        .map_err(|e| ApiError::bad(format!("input shape {:?}: {e}", input.shape)))?;
    Ok(InferInput {
        id,
        rows,
        single,
        timeout,
        binary_output,
    })
}

fn bool_parameter(name: &str, value: &Value) -> Result<bool, ApiError> {
    value
        .as_bool()
        .ok_or_else(|| ApiError::bad(format!("parameter {name} is {value}, not a boolean")))
}

/// Reads a JSON array of numbers, flat or nested to any depth, straight into f32s (row-major),
/// without building a `serde_json::Value` tree.
pub(crate) fn decode_json_numbers(json: &str) -> Result<Vec<f32>, ApiError> {
    let mut values = Vec::new();
    let mut de = serde_json::Deserializer::from_str(json);
    Flatten {
        out: &mut values,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(|e| ApiError::bad(format!("input data: {e}")))?;
    Ok(values)
}

/// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH: usize = 32;

struct Flatten<'v> {
    out: &'v mut Vec<f32>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of numbers (flat or nested)")
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        if self.depth == 0 {
            return Err(E::custom("data must be an array, not a number"));
        }
        // Rounds to the nearest f32: exact for any number printed from an f32.
        self.out.push(v as f32);
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(serde::de::Error::custom(format!(
                "data nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let depth = self.depth + 1;
        while seq
            .next_element_seed(Flatten {
                out: &mut *self.out,
                depth,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// The JSON of an infer reply (the whole body, or the header of a binary one).
#[derive(Serialize)]
struct JsonReply<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: [JsonReplyOutput<'a>; 1],
}

#[derive(Serialize)]
struct JsonReplyOutput<'a> {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a [f32]>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// An encoded HTTP infer reply: the body and, for a binary one, the JSON header's length.
#[derive(Debug)]
pub(crate) struct HttpReply {
    pub(crate) body: Bytes,
    pub(crate) header_length: Option<usize>,
}

/// Encodes `output` as the reply to `input`, in JSON or with the binary extension.
pub(crate) fn encode_http(
    model: &str,
    version: &str,
    input: &InferInput,
    output: Array2<f32>,
) -> HttpReply {
    let shape = output_shape(input.single, output.dim());
    let flat = output.as_slice().expect("replies are in standard layout");
    let reply = |parameters, data| JsonReply {
        model_name: model,
        model_version: version,
        id: input.id.as_deref(),
        outputs: [JsonReplyOutput {
            name: OUTPUT_NAME,
            datatype: FP32,
            shape: shape.clone(),
            parameters,
            data,
        }],
    };
    if input.binary_output {
        let parameters = BinarySize {
            binary_data_size: std::mem::size_of_val(flat),
        };
        let mut body =
            serde_json::to_vec(&reply(Some(parameters), None)).expect("plain structs serialise");
        let header_length = body.len();
        body.reserve_exact(std::mem::size_of_val(flat));
        body.extend(flat.iter().flat_map(|v| v.to_le_bytes()));
        HttpReply {
            body: Bytes::from(body),
            header_length: Some(header_length),
        }
    } else {
        let body = serde_json::to_vec(&reply(None, Some(flat))).expect("plain structs serialise");
        HttpReply {
            body: Bytes::from(body),
            header_length: None,
        }
    }
}

/// `[rows, O]`, or `[O]` for a request that sent one sample as `[W]`.
pub(crate) fn output_shape(single: bool, (rows, width): (usize, usize)) -> Vec<usize> {
    if single {
        vec![width]
    } else {
        vec![rows, width]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<InferInput, ApiError> {
        decode_http(&Bytes::from(json.to_string()), None)
    }

    fn binary(header: &str, tail: &[u8]) -> Result<InferInput, ApiError> {
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(tail);
        decode_http(&Bytes::from(body), Some(header.len()))
    }

    fn bad(result: Result<InferInput, ApiError>, needle: &str) {
        match result {
            Err(ApiError::BadRequest(message)) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}")
            }
            other => panic!("expected a BadRequest containing {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn json_flat_and_nested_decode_to_the_same_rows() {
        let flat = decode(
            r#"{"id":"7","inputs":[{"name":"input","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6.5]}]}"#,
        )
        .unwrap();
        let nested = decode(
            r#"{"inputs":[{"name":"input","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5,6.5]]}]}"#,
        )
        .unwrap();
        assert_eq!(flat.rows, nested.rows);
        assert_eq!(
            flat.rows,
            ndarray::arr2(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]])
        );
        assert_eq!(flat.id.as_deref(), Some("7"));
        assert!(!flat.single && !flat.binary_output && flat.timeout.is_none());
    }

    #[test]
    fn json_numbers_printed_from_f32_come_back_bit_for_bit() {
        let values = [
            0.1f32,
            -3.4028235e38,
            1.1754944e-38,
            1e-45,
            0.33333334,
            16777216.0,
        ];
        let text = serde_json::to_string(&values).unwrap();
        let back = decode_json_numbers(&text).unwrap();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn one_sample_shape_and_parameters() {
        let input = decode(
            r#"{"parameters":{"timeout":1500,"binary_data_output":true,"priority":1},
                "inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2]}]}"#,
        )
        .unwrap();
        assert!(input.single && input.binary_output);
        assert_eq!(input.rows.dim(), (1, 2));
        assert_eq!(input.timeout, Some(Duration::from_micros(1500)));
    }

    #[test]
    fn binary_inputs_decode_bit_for_bit_and_outputs_can_be_json() {
        let values = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.0];
        let tail: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let header = r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"output","parameters":{"binary_data":false}}]}"#;
        let input = binary(header, &tail).unwrap();
        let bits: Vec<u32> = input.rows.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert!(!input.binary_output);
    }

    #[test]
    fn malformed_requests_are_typed_bad_requests() {
        let header = r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#;
        bad(binary(header, &[0; 12]), "only 12 bytes");
        bad(binary(header, &[0; 20]), "belong to no input");
        let odd = r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":3}}]}"#;
        bad(binary(odd, &[0; 3]), "whole number");
        bad(
            decode_http(&Bytes::from_static(b"{}"), Some(10)),
            "has only 2 bytes",
        );
        bad(decode("not json"), "malformed");
        bad(decode(r#"{"inputs":[]}"#), "exactly one input");
        bad(
            decode(
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"INT32","data":[1,2]}]}"#,
            ),
            "datatype INT32",
        );
        bad(
            decode(
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"BYTES","data":["a","b"]}]}"#,
            ),
            "datatype BYTES",
        );
        bad(
            decode(r#"{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2]}]}"#),
            "needs 3 elements",
        );
        bad(
            decode(
                r#"{"inputs":[{"name":"input","shape":[1,-2],"datatype":"FP32","data":[1,2]}]}"#,
            ),
            "negative",
        );
        bad(
            decode(
                r#"{"inputs":[{"name":"input","shape":[1,1,2],"datatype":"FP32","data":[1,2]}]}"#,
            ),
            "expected [rows, width]",
        );
        bad(
            decode(
                r#"{"inputs":[{"name":"input","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]}"#,
            ),
            "too large",
        );
        bad(
            decode(
                r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,"2"]}]}"#,
            ),
            "input data",
        );
        bad(
            decode(r#"{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32","data":3}]}"#),
            "must be an array",
        );
        bad(
            decode(r#"{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32"}]}"#),
            "no data",
        );
        bad(
            decode(
                r#"{"id":5,"inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            ),
            "not a string",
        );
        bad(
            decode(
                r#"{"parameters":{"timeout":-1},"inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            ),
            "timeout",
        );
        bad(
            decode(
                r#"{"parameters":{"binary_data_output":"yes"},"inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            ),
            "not a boolean",
        );
        bad(
            decode(
                r#"{"inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"probs"}]}"#,
            ),
            "unknown output",
        );
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let request = format!(
            r#"{{"inputs":[{{"name":"input","shape":[1],"datatype":"FP32","data":{deep}}}]}}"#
        );
        bad(decode(&request), "nested deeper");
    }

    #[test]
    fn unsupported_features_are_refused_as_unimplemented() {
        let shm = decode(
            r#"{"inputs":[{"name":"input","shape":[1],"datatype":"FP32","parameters":{"shared_memory_region":"r"}}]}"#,
        );
        assert!(
            matches!(shm, Err(ApiError::Unimplemented(m)) if m.contains("shared_memory_region"))
        );
        let seq = decode(
            r#"{"parameters":{"sequence_id":3},"inputs":[{"name":"input","shape":[1],"datatype":"FP32","data":[1]}]}"#,
        );
        assert!(matches!(seq, Err(ApiError::Unimplemented(m)) if m.contains("sequence_id")));
    }

    #[test]
    fn binary_reply_is_a_json_header_then_little_endian_values() {
        let input = InferInput {
            id: Some("a".into()),
            rows: Array2::zeros((1, 2)),
            single: false,
            timeout: None,
            binary_output: true,
        };
        let output = ndarray::arr2(&[[0.25f32, -1.5, 3.0]]);
        let reply = encode_http("m", "1", &input, output);
        let n = reply.header_length.unwrap();
        let header: Value = serde_json::from_slice(&reply.body[..n]).unwrap();
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 12);
        assert_eq!(header["outputs"][0]["shape"], serde_json::json!([1, 3]));
        assert_eq!(header["id"], "a");
        assert_eq!(
            f32_from_le_bytes(&reply.body[n..]).unwrap(),
            vec![0.25, -1.5, 3.0]
        );

        let json = encode_http(
            "m",
            "1",
            &InferInput {
                binary_output: false,
                single: true,
                ..input
            },
            ndarray::arr2(&[[0.1f32, 0.2]]),
        );
        assert!(json.header_length.is_none());
        let body: Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(body["outputs"][0]["shape"], serde_json::json!([2]));
        // Shortest round-trip text of each f32, which parses back to the same bits.
        let data: Vec<f32> = body["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(data, vec![0.1f32, 0.2]);
        assert!(
            std::str::from_utf8(&json.body)
                .unwrap()
                .contains("[0.1,0.2]")
        );
    }

    #[test]
    fn le_bytes_of_is_the_values_in_order() {
        let bytes = le_bytes_of(ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]));
        assert_eq!(f32_from_le_bytes(&bytes).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    }
}
