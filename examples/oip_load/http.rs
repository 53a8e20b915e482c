//! The HTTP/1.1 client: one keep-alive connection per slot, one request in flight on it (as
//! tritonclient and wrk do), reconnecting when the server closes it. Built on hyper's connection
//! API rather than a pooled client so the number of connections is exactly the one asked for.

use std::net::SocketAddr;
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::payload::{HttpBody, looks_like_answer};
use crate::stats::Outcome;

/// Where the requests go.
pub struct HttpTarget {
    addr: SocketAddr,
    authority: String,
    infer_path: String,
}

impl HttpTarget {
    /// The infer endpoint of `model` on the server at `url` (`http://host:port`).
    pub async fn new(url: &str, model: &str) -> Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("URL {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("URL {url}: only http:// is supported");
        }
        let authority = uri.authority().context("URL without host")?.to_string();
        let host_port = if uri.port().is_some() {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&host_port)
            .await
            .with_context(|| format!("resolving {host_port}"))?
            .next()
            .with_context(|| format!("{host_port} resolves to nothing"))?;
        Ok(Self {
            addr,
            authority,
            infer_path: format!("/v2/models/{model}/infer"),
        })
    }

    async fn connect<B>(&self) -> Result<SendRequest<B>, String>
    where
        B: hyper::body::Body + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::task::spawn_local(async move {
            // Ends when the connection closes; the next send on this slot sees it and reconnects.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Polls `GET /v2/health/ready` until it answers 200, for at most `timeout`.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> Result<()> {
        let give_up = tokio::time::Instant::now() + timeout;
        let mut last = String::from("no attempt");
        while tokio::time::Instant::now() < give_up {
            match self.ready_status().await {
                Ok(200) => return Ok(()),
                Ok(status) => last = format!("status {status}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        bail!("{} not ready after {timeout:?}: {last}", self.authority)
    }

    async fn ready_status(&self) -> Result<u16, String> {
        let mut sender = self.connect::<Empty<Bytes>>().await?;
        let request = Request::get("/v2/health/ready")
            .header(HOST, &self.authority)
            .body(Empty::new())
            .expect("a valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    }
}

/// One connection and the request bodies it sends.
pub struct HttpSlot {
    target: Rc<HttpTarget>,
    bodies: Rc<Vec<HttpBody>>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpSlot {
    pub fn new(target: Rc<HttpTarget>, bodies: Rc<Vec<HttpBody>>) -> Self {
        Self {
            target,
            bodies,
            sender: None,
        }
    }

    /// Sends request number `i` and waits for the whole reply.
    pub async fn send(&mut self, i: usize) -> Outcome {
        let outcome = self.try_send(i).await;
        if matches!(outcome, Outcome::Transport(_)) {
            self.sender = None;
        }
        outcome
    }

    /// Forgets the connection (after a client timeout its state is unknown).
    pub fn reset(&mut self) {
        self.sender = None;
    }

    async fn try_send(&mut self, i: usize) -> Outcome {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            match self.target.connect().await {
                Ok(sender) => self.sender = Some(sender),
                Err(e) => return Outcome::Transport(e),
            }
        }
        let sender = self.sender.as_mut().expect("connected above");
        if let Err(e) = sender.ready().await {
            return Outcome::Transport(format!("connection: {e}"));
        }
        let body = &self.bodies[i % self.bodies.len()];
        let mut request =
            Request::post(&self.target.infer_path).header(HOST, &self.target.authority);
        request = match body.header_len {
            Some(n) => request
                .header(CONTENT_TYPE, "application/octet-stream")
                .header("inference-header-content-length", n),
            None => request.header(CONTENT_TYPE, "application/json"),
        };
        let request = request
            .body(Full::new(body.bytes.clone()))
            .expect("a valid request");
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => return Outcome::Transport(format!("request: {e}")),
        };
        let status = response.status().as_u16();
        let reply = match response.into_body().collect().await {
            Ok(reply) => reply.to_bytes(),
            Err(e) => return Outcome::Transport(format!("reply body: {e}")),
        };
        match status {
            200 if looks_like_answer(&reply) => Outcome::Ok,
            200 => Outcome::BadAnswer,
            503 => Outcome::Unavailable,
            504 => Outcome::DeadlineExceeded,
            other => Outcome::Other(other.to_string()),
        }
    }
}
