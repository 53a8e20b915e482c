//! The gRPC client: `ModelInfer` with the row in `raw_input_contents`, over a few HTTP/2
//! connections shared by the slots (each slot one stream at a time).

use std::rc::Rc;

use anyhow::{Context, Result};
use bytes::Bytes;
use tonic::Code;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

use crate::payload::PayloadSpec;
use crate::proto::{
    InferInputTensor, InferParameter, InferRequestedOutputTensor, ModelInferRequest,
    ModelInferResponse, infer_parameter::ParameterChoice,
};
use crate::stats::Outcome;

const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// The requests, one per distinct row.
pub fn requests(spec: &PayloadSpec, model: &str) -> Vec<ModelInferRequest> {
    spec.row_values()
        .iter()
        .map(|row| ModelInferRequest {
            model_name: model.to_string(),
            inputs: vec![InferInputTensor {
                name: spec.input_name.clone(),
                datatype: "FP32".into(),
                shape: vec![1, spec.width as i64],
                ..Default::default()
            }],
            outputs: vec![InferRequestedOutputTensor {
                name: spec.output_name.clone(),
                ..Default::default()
            }],
            parameters: spec
                .server_timeout_us
                .map(|us| {
                    let value = ParameterChoice::Int64Param(us as i64);
                    (
                        "timeout".to_string(),
                        InferParameter {
                            parameter_choice: Some(value),
                        },
                    )
                })
                .into_iter()
                .collect(),
            raw_input_contents: vec![Bytes::from(
                row.iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            )],
            ..Default::default()
        })
        .collect()
}

/// `channels` HTTP/2 connections to `url`.
pub async fn connect(url: &str, channels: usize) -> Result<Vec<Channel>> {
    let mut connected = Vec::with_capacity(channels);
    for _ in 0..channels {
        let endpoint =
            Endpoint::from_shared(url.to_string()).with_context(|| format!("URL {url}"))?;
        let channel = endpoint
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        connected.push(channel);
    }
    Ok(connected)
}

/// One stream slot on a shared connection.
pub struct GrpcSlot {
    client: Grpc<Channel>,
    requests: Rc<Vec<ModelInferRequest>>,
}

impl GrpcSlot {
    pub fn new(channel: Channel, requests: Rc<Vec<ModelInferRequest>>) -> Self {
        Self {
            client: Grpc::new(channel),
            requests,
        }
    }

    /// Sends request number `i` and waits for its answer.
    pub async fn send(&mut self, i: usize) -> Outcome {
        if let Err(e) = self.client.ready().await {
            return Outcome::Transport(format!("connection: {e}"));
        }
        let request = self.requests[i % self.requests.len()].clone();
        let codec = ProstCodec::<ModelInferRequest, ModelInferResponse>::default();
        let path = PathAndQuery::from_static(MODEL_INFER);
        match self
            .client
            .unary(tonic::Request::new(request), path, codec)
            .await
        {
            Ok(reply) if reply.get_ref().raw_output_contents.is_empty() => Outcome::BadAnswer,
            Ok(_) => Outcome::Ok,
            // A status the client made up from a failed connection carries its cause.
            Err(status) if std::error::Error::source(&status).is_some() => {
                Outcome::Transport(status.to_string())
            }
            Err(status) => match status.code() {
                Code::Unavailable => Outcome::Unavailable,
                Code::DeadlineExceeded => Outcome::DeadlineExceeded,
                code => Outcome::Other(format!("{code:?}")),
            },
        }
    }
}
