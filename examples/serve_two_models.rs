//! Two models served by one `Scheduler`: a few threads call the blocking `Scheduler::predict`
//! concurrently, every reply is checked bit for bit against running the compiled model directly,
//! the counters against the requests sent, and each model's p50/p99 latency is printed.
//!
//! Run with `cargo run --example serve_two_models`.

use std::sync::Arc;

use densebatch::prelude::*;
use densebatch::{ModelConfig, Scheduler, SchedulerConfig, ServeError};
use ndarray::Array2;

const THREADS: usize = 4;
const REQUESTS: usize = 200;

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Model::random(&[32, 64, 10], Activation::Relu, Activation::Softmax, 1).compile()?;
    let b = Model::random(&[32, 128, 3], Activation::Relu, Activation::Softmax, 2).compile()?;
    let models = [("a", Arc::new(a)), ("b", Arc::new(b))];

    let scheduler = Scheduler::new(SchedulerConfig::default().threads(2))?;
    for (name, compiled) in &models {
        scheduler.load(
            name,
            compiled.clone(),
            ModelConfig::default().max_batch_size(16),
        )?;
    }
    std::thread::scope(|s| {
        let callers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (scheduler, models) = (&scheduler, &models);
                s.spawn(move || -> Result<(), ServeError> {
                    for i in 0..REQUESTS {
                        let (name, compiled) = &models[(t + i) % 2];
                        let x = Array2::from_shape_fn((1, 32), |(_, j)| {
                            ((t * 1000 + i + j) as f32).sin()
                        });
                        let y = scheduler.predict(name, x.view())?;
                        assert_eq!(y, compiled.predict(x.view()).unwrap(), "bit for bit");
                    }
                    Ok(())
                })
            })
            .collect();
        // Every caller's every request answered without error.
        callers
            .into_iter()
            .try_for_each(|caller| caller.join().expect("caller thread"))
    })?;

    let metrics = scheduler.metrics();
    for (name, _) in &models {
        let m = metrics.model(name).unwrap();
        let latency = &m.request_latency;
        println!("{name}: p50 {:?}, p99 {:?}", latency.p50(), latency.p99());
        assert_eq!(m.counters.completed, (THREADS * REQUESTS / 2) as u64);
        assert_eq!(m.counters.accepted, m.counters.completed);
    }
    Ok(())
}
