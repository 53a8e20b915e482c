//! The gRPC client: `ModelInfer` with the row in `raw_input_contents`, over a few HTTP/2
//! connections shared by the slots (each slot one stream at a time). The messages and the client
//! are the ones `densebatch::server` generates from its `inference.proto`.

use std::rc::Rc;

use anyhow::{Context, Result};
use bytes::Bytes;
use densebatch::server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use densebatch::server::proto::infer_parameter::ParameterChoice;
use densebatch::server::proto::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use densebatch::server::proto::{InferParameter, ModelInferRequest};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::payload::PayloadSpec;
use crate::stats::Outcome;

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
                    let parameter = InferParameter {
                        parameter_choice: Some(value),
                    };
                    ("timeout".to_string(), parameter)
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
    client: GrpcInferenceServiceClient<Channel>,
    requests: Rc<Vec<ModelInferRequest>>,
}

impl GrpcSlot {
    pub fn new(channel: Channel, requests: Rc<Vec<ModelInferRequest>>) -> Self {
        Self {
            client: GrpcInferenceServiceClient::new(channel),
            requests,
        }
    }

    /// Sends request number `i` and waits for its answer.
    pub async fn send(&mut self, i: usize) -> Outcome {
        let request = self.requests[i % self.requests.len()].clone();
        match self.client.model_infer(request).await {
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
