//! Writes a seeded random model (ReLU hidden layers, softmax output) of any widths to a folder,
//! as model.json + model.safetensors, e.g. a model of odd widths to serve or benchmark:
//!
//! ```text
//! cargo run --release --example random_model -- 300,257,129,7 target/models/odd-mlp [SEED]
//! ```

use anyhow::{Context, Result, bail, ensure};
use densebatch::{Activation, Model};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(widths), Some(dir)) = (args.first(), args.get(1)) else {
        bail!(
            "usage: random_model WIDTHS OUT_DIR [SEED]   (WIDTHS: input then each layer, e.g. 300,257,129,7)"
        );
    };
    let widths: Vec<usize> = widths
        .split(',')
        .map(|w| w.trim().parse().with_context(|| format!("width `{w}`")))
        .collect::<Result<_>>()?;
    ensure!(
        widths.len() >= 2 && widths.iter().all(|&w| w > 0),
        "WIDTHS needs an input width and at least one layer, none zero"
    );
    let seed: u64 = args.get(2).map_or(Ok(1), |s| s.parse()).context("SEED")?;
    let model = Model::random(&widths, Activation::Relu, Activation::Softmax, seed);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir}"))?;
    let spec = std::path::Path::new(dir).join("model.json");
    model.save(&spec)?;
    println!(
        "{} ({} parameters) -> {}",
        model.spec().name,
        model
            .layers()
            .iter()
            .map(|l| l.weight.len() + l.bias.as_ref().map_or(0, |b| b.len()))
            .sum::<usize>(),
        spec.display()
    );
    Ok(())
}
