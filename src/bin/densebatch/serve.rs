//! `densebatch serve`: the network server over a model repository folder.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use densebatch::server::{ServerConfig, serve};

use crate::cli::ServeArgs;

pub fn run(args: &ServeArgs) -> Result<()> {
    let mut config = ServerConfig::new(&args.model_repository);
    config.host = args.host;
    config.http_port = args.http_port;
    config.grpc_port = args.grpc_port;
    config.max_batch = args.max_batch.get();
    config.max_wait = Duration::from_micros(args.max_wait_us);
    config.queue_capacity = args.queue_capacity.get();
    config.default_timeout = Duration::from_millis(args.default_timeout_ms);
    config.threads = args.threads.map(|t| t.get());
    config.precision = args.precision;
    config.front_threads = args.front_threads.get();
    config.body_limit = args.max_body_bytes.get();
    config.overload_status = args.overload_status;
    config.max_front_lag = Duration::from_millis(args.max_front_lag_ms);
    config.drain_delay = Duration::from_millis(args.drain_delay_ms);
    serve(config, |started| {
        // Flushed at once: scripts read the ports from this line.
        println!("{started}");
        let _ = std::io::stdout().flush();
    })?;
    println!("drained: every accepted request answered");
    Ok(())
}
