//! Entry points for the fuzz targets (tests/fuzz) into parsers that have no public bytes-based
//! door of their own. Not part of the API: hidden from the docs and free to change.

use ndarray::ArrayD;

use crate::error::Result;

/// Parses the bytes of a float32 `.npy` file exactly as the reference-harness loader parses each
/// `W{i}.npy` / `b{i}.npy` file.
///
/// # Examples
/// ```
/// let err = densebatch::fuzzing::read_npy_f32(b"\x93NUMPY\x01\x00").unwrap_err();
/// assert!(matches!(err, densebatch::Error::Format { .. }), "{err}");
/// ```
///
/// # Errors
/// [`crate::Error::Format`] for a malformed header, another dtype, Fortran order, or a length
/// that disagrees with the header's shape.
pub fn read_npy_f32(bytes: &[u8]) -> Result<ArrayD<f32>> {
    crate::model::read_npy_f32_bytes(bytes)
}

/// Decodes the body of an HTTP infer request (`POST /v2/models/{name}/infer`) as the server does:
/// all JSON, or with `header_length` (the `Inference-Header-Content-Length` header) a JSON header
/// then binary tensors. Returns the shape of the rows it carries.
///
/// # Examples
/// ```
/// let body = br#"{"inputs":[{"name":"input","shape":[2],"datatype":"FP32","data":[1,2]}]}"#;
/// assert_eq!(densebatch::fuzzing::decode_http_infer(body, None).unwrap(), (1, 2));
/// assert!(densebatch::fuzzing::decode_http_infer(b"{", None).is_err());
/// ```
///
/// # Errors
/// [`crate::server::ApiError`]: a malformed request, an unsupported datatype or parameter.
#[cfg(feature = "server")]
pub fn decode_http_infer(
    body: &[u8],
    header_length: Option<usize>,
) -> std::result::Result<(usize, usize), crate::server::ApiError> {
    crate::server::decode_http_infer(body, header_length)
}

/// Decodes a protobuf `ModelInferRequest` as the server's gRPC infer call does. Returns the
/// shape of the rows it carries.
///
/// # Examples
/// ```
/// assert!(densebatch::fuzzing::decode_grpc_infer(b"").is_err()); // no inputs
/// ```
///
/// # Errors
/// [`crate::server::ApiError`]: malformed protobuf, a malformed request, an unsupported datatype.
#[cfg(feature = "server")]
pub fn decode_grpc_infer(
    message: &[u8],
) -> std::result::Result<(usize, usize), crate::server::ApiError> {
    crate::server::decode_grpc_infer(message)
}
