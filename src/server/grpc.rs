//! The gRPC face: `inference.GRPCInferenceService`, tensors in `raw_input_contents` /
//! `raw_output_contents` (what tritonclient sends and reads), `fp32_contents` accepted too.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::error::ApiError;
use super::front_metrics::Protocol;
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::{self, infer_parameter::ParameterChoice};
use super::state::AppState;
use super::stats::{BatchSizeStats, Duration64, ModelStats};
use super::tensor::{self, FP32, INPUT_NAME, OUTPUT_NAME};
use super::{EXTENSIONS, PLATFORM};

/// The service, over the shared state.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) state: Arc<AppState>,
}

type Reply<T> = Result<Response<T>, Status>;

fn status(error: ApiError) -> Status {
    error.grpc_status()
}

/// The `grpc-timeout` header (`<digits><unit>`, unit one of H M S m u n), as a duration.
pub(crate) fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// A decoded `ModelInferRequest`.
pub(crate) fn decode(request: proto::ModelInferRequest) -> Result<tensor::InferInput, ApiError> {
    let mut timeout = None;
    for (name, value) in &request.parameters {
        tensor::check_unsupported_parameter(name)?;
        if name == "timeout" {
            let micros = match value.parameter_choice {
                Some(ParameterChoice::Int64Param(v)) => i128::from(v),
                Some(ParameterChoice::Uint64Param(v)) => i128::from(v),
                _ => return Err(ApiError::bad("parameter timeout must be an integer (µs)")),
            };
            timeout = Some(tensor::timeout_from_micros(micros)?);
        }
    }
    let [input] = &request.inputs[..] else {
        return Err(ApiError::bad(format!(
            "the model takes exactly one input tensor, the request has {}",
            request.inputs.len()
        )));
    };
    tensor::check_datatype(&input.datatype)?;
    for name in input.parameters.keys() {
        tensor::check_unsupported_parameter(name)?;
    }
    for output in &request.outputs {
        if output.name != OUTPUT_NAME {
            return Err(ApiError::bad(format!(
                "unknown output '{}': the model's output is '{OUTPUT_NAME}'",
                output.name
            )));
        }
    }
    let values = match (&request.raw_input_contents[..], &input.contents) {
        ([raw], _) => tensor::f32_from_le_bytes(raw)?,
        ([], Some(contents)) => contents.fp32_contents.clone(),
        ([], None) => return Err(ApiError::bad(format!("input {}: no data", input.name))),
        (raw, _) => {
            return Err(ApiError::bad(format!(
                "{} raw_input_contents for one input",
                raw.len()
            )));
        }
    };
    let (rows, width, single) = tensor::rows_of(&input.shape, values.len())?;
    let rows = ndarray::Array2::from_shape_vec((rows, width), values)
        .map_err(|e| ApiError::bad(format!("input shape {:?}: {e}", input.shape)))?;
    Ok(tensor::InferInput {
        id: Some(request.id),
        rows,
        single,
        timeout,
        binary_output: true,
    })
}

fn duration(d: Duration64) -> Option<proto::StatisticDuration> {
    Some(proto::StatisticDuration {
        count: d.count,
        ns: d.ns,
    })
}

fn stats_proto(s: ModelStats) -> proto::ModelStatistics {
    let i = s.inference_stats;
    proto::ModelStatistics {
        name: s.name,
        version: s.version,
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(proto::InferStatistics {
            success: duration(i.success),
            fail: duration(i.fail),
            queue: duration(i.queue),
            compute_input: duration(i.compute_input),
            compute_infer: duration(i.compute_infer),
            compute_output: duration(i.compute_output),
        }),
        batch_stats: s
            .batch_stats
            .into_iter()
            .map(|b: BatchSizeStats| proto::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: duration(b.compute_input),
                compute_infer: duration(b.compute_infer),
                compute_output: duration(b.compute_output),
            })
            .collect(),
    }
}

fn version_of(version: &str) -> Option<&str> {
    (!version.is_empty()).then_some(version)
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Reply<proto::ServerLiveResponse> {
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Reply<proto::ServerReadyResponse> {
        Ok(Response::new(proto::ServerReadyResponse {
            ready: self.state.ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<proto::ModelReadyRequest>,
    ) -> Reply<proto::ModelReadyResponse> {
        let r = request.into_inner();
        let model = self
            .state
            .model(&r.name, version_of(&r.version))
            .map_err(status)?;
        Ok(Response::new(proto::ModelReadyResponse {
            ready: self.state.model_ready(&model.name),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> Reply<proto::ServerMetadataResponse> {
        Ok(Response::new(proto::ServerMetadataResponse {
            name: "densebatch".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Reply<proto::ModelMetadataResponse> {
        let r = request.into_inner();
        let m = self
            .state
            .model(&r.name, version_of(&r.version))
            .map_err(status)?;
        let tensor = |name: &str, width: usize| proto::model_metadata_response::TensorMetadata {
            name: name.into(),
            datatype: FP32.into(),
            shape: vec![-1, width as i64],
        };
        Ok(Response::new(proto::ModelMetadataResponse {
            name: m.name.clone(),
            versions: vec![m.version.clone()],
            platform: PLATFORM.into(),
            inputs: vec![tensor(INPUT_NAME, m.input_width)],
            outputs: vec![tensor(OUTPUT_NAME, m.output_width)],
        }))
    }

    async fn model_infer(
        &self,
        request: Request<proto::ModelInferRequest>,
    ) -> Reply<proto::ModelInferResponse> {
        let received = Instant::now();
        let header_timeout = grpc_timeout(request.metadata());
        let result = self
            .infer(request.into_inner(), header_timeout, received)
            .await;
        let code = match &result {
            Ok(_) => 200,
            Err(e) => e.http_status(503),
        };
        self.state.front.count(Protocol::Grpc, code);
        result.map(Response::new).map_err(status)
    }

    async fn model_config(
        &self,
        request: Request<proto::ModelConfigRequest>,
    ) -> Reply<proto::ModelConfigResponse> {
        let r = request.into_inner();
        let m = self
            .state
            .model(&r.name, version_of(&r.version))
            .map_err(status)?;
        let fp32 = proto::DataType::TypeFp32 as i32;
        Ok(Response::new(proto::ModelConfigResponse {
            config: Some(proto::ModelConfig {
                name: m.name.clone(),
                platform: PLATFORM.into(),
                backend: "densebatch".into(),
                max_batch_size: i32::try_from(m.max_batch).unwrap_or(i32::MAX),
                input: vec![proto::ModelInput {
                    name: INPUT_NAME.into(),
                    data_type: fp32,
                    dims: vec![m.input_width as i64],
                }],
                output: vec![proto::ModelOutput {
                    name: OUTPUT_NAME.into(),
                    data_type: fp32,
                    dims: vec![m.output_width as i64],
                }],
                dynamic_batching: Some(proto::ModelDynamicBatching {
                    preferred_batch_size: vec![],
                    max_queue_delay_microseconds: m.max_wait.as_micros() as u64,
                }),
                parameters: [(
                    "precision".to_string(),
                    proto::ModelParameter {
                        string_value: m.precision.name().into(),
                    },
                )]
                .into(),
            }),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<proto::ModelStatisticsRequest>,
    ) -> Reply<proto::ModelStatisticsResponse> {
        let r = request.into_inner();
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        let stats = self
            .state
            .stats(name, version_of(&r.version))
            .map_err(status)?;
        Ok(Response::new(proto::ModelStatisticsResponse {
            model_stats: stats.into_iter().map(stats_proto).collect(),
        }))
    }

    async fn repository_index(
        &self,
        request: Request<proto::RepositoryIndexRequest>,
    ) -> Reply<proto::RepositoryIndexResponse> {
        let entries = self
            .state
            .index(request.into_inner().ready)
            .map_err(status)?;
        Ok(Response::new(proto::RepositoryIndexResponse {
            models: entries
                .into_iter()
                .map(|e| proto::repository_index_response::ModelIndex {
                    name: e.name,
                    version: e.version,
                    state: e.state.into(),
                    reason: e.reason,
                })
                .collect(),
        }))
    }

    async fn repository_model_load(
        &self,
        request: Request<proto::RepositoryModelLoadRequest>,
    ) -> Reply<proto::RepositoryModelLoadResponse> {
        if self.state.draining.load(Ordering::Acquire) {
            return Err(status(ApiError::unavailable("the server is shutting down")));
        }
        self.state
            .load(&request.into_inner().model_name)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<proto::RepositoryModelUnloadRequest>,
    ) -> Reply<proto::RepositoryModelUnloadResponse> {
        self.state
            .unload(&request.into_inner().model_name)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RepositoryModelUnloadResponse {}))
    }
}

impl Service {
    async fn infer(
        &self,
        request: proto::ModelInferRequest,
        header_timeout: Option<Duration>,
        received: Instant,
    ) -> Result<proto::ModelInferResponse, ApiError> {
        let model = self
            .state
            .model(&request.model_name, version_of(&request.model_version))?;
        self.state.admit()?;
        let mut input = decode(request)?;
        // The earlier of the client's two deadlines, if it gave any.
        let timeout = match (input.timeout, header_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = self.state.deadline(received, timeout);
        let rows = std::mem::replace(&mut input.rows, ndarray::Array2::zeros((0, 0)));
        let output = self.state.infer(&model, rows, received, deadline).await?;
        let shape = tensor::output_shape(input.single, output.dim())
            .into_iter()
            .map(|d| d as i64)
            .collect();
        Ok(proto::ModelInferResponse {
            model_name: model.name.clone(),
            model_version: model.version.clone(),
            id: input.id.unwrap_or_default(),
            parameters: Default::default(),
            outputs: vec![proto::model_infer_response::InferOutputTensor {
                name: OUTPUT_NAME.into(),
                datatype: FP32.into(),
                shape,
                parameters: Default::default(),
                contents: None,
            }],
            raw_output_contents: vec![tensor::le_bytes_of(output)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(shape: Vec<i64>, datatype: &str, raw: Vec<u8>) -> proto::ModelInferRequest {
        proto::ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![proto::model_infer_request::InferInputTensor {
                name: "input".into(),
                datatype: datatype.into(),
                shape,
                ..Default::default()
            }],
            raw_input_contents: if raw.is_empty() {
                vec![]
            } else {
                vec![raw.into()]
            },
            ..Default::default()
        }
    }

    #[test]
    fn raw_and_typed_contents_decode_to_the_same_rows() {
        let values = [0.5f32, -2.0, 1e-40, 7.0];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = decode(request(vec![2, 2], "FP32", raw)).unwrap();
        let mut typed = request(vec![2, 2], "FP32", vec![]);
        typed.inputs[0].contents = Some(proto::InferTensorContents {
            fp32_contents: values.to_vec(),
            ..Default::default()
        });
        let b = decode(typed).unwrap();
        assert_eq!(a.rows, b.rows);
        assert_eq!(
            a.rows.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.map(f32::to_bits).to_vec()
        );
    }

    #[test]
    fn malformed_grpc_requests_are_invalid_argument() {
        let cases = [
            request(vec![1, 2], "INT32", vec![0; 8]),
            request(vec![1, 3], "FP32", vec![0; 8]),
            request(vec![1, 2], "FP32", vec![0; 7]),
            request(vec![1, 2], "FP32", vec![]),
            request(vec![2, 2, 1], "FP32", vec![0; 16]),
        ];
        for case in cases {
            let error = decode(case).unwrap_err();
            assert_eq!(
                error.grpc_status().code(),
                tonic::Code::InvalidArgument,
                "{error}"
            );
        }
        let mut two = request(vec![1, 1], "FP32", vec![0; 4]);
        two.raw_input_contents.push(vec![0u8; 4].into());
        assert!(
            decode(two)
                .unwrap_err()
                .to_string()
                .contains("2 raw_input_contents")
        );
    }

    #[test]
    fn wire_bytes_decode_through_the_fuzzing_door() {
        let raw: Vec<u8> = [0.5f32, 1.0, 2.0, 3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let bytes = prost::Message::encode_to_vec(&request(vec![1, 4], "FP32", raw));
        assert_eq!(crate::server::decode_grpc_infer(&bytes), Ok((1, 4)));
        // The gRPC seed of tests/fuzz/make_seeds.py, byte for byte.
        let seed = b"\x0a\x09mnist-mlp\x2a\x11\x0a\x05input\x12\x04FP32\x1a\x02\x01\x04\x3a\x10";
        let mut seed = seed.to_vec();
        seed.extend([0u8; 16]);
        assert_eq!(crate::server::decode_grpc_infer(&seed), Ok((1, 4)));
        let error = crate::server::decode_grpc_infer(&[0xff, 0xff]).unwrap_err();
        assert!(
            error.to_string().contains("malformed ModelInferRequest"),
            "{error}"
        );
    }

    #[test]
    fn grpc_timeout_header_units() {
        let mut m = tonic::metadata::MetadataMap::new();
        for (text, expected) in [
            ("5S", Some(Duration::from_secs(5))),
            ("250m", Some(Duration::from_millis(250))),
            ("10u", Some(Duration::from_micros(10))),
            ("2H", Some(Duration::from_secs(7200))),
            ("x", None),
            ("10q", None),
        ] {
            m.insert("grpc-timeout", text.parse().unwrap());
            assert_eq!(grpc_timeout(&m), expected, "{text}");
        }
    }
}
