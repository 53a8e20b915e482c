//! `densebatch inspect`: what a model is and how it will run here.

use anyhow::Result;

use crate::cli::{InspectArgs, thread_budget};
use densebatch::{Precision, Predictor, Split};

use crate::accuracy;

use crate::model_source::{compile, load_model};
use crate::stats::fmt_bytes;

pub fn run(args: &InspectArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let spec = model.spec();
    let compiled = compile(&model, args.precision)?;
    let threads = thread_budget(args.threads);

    println!("model         {} {}", spec.name, spec.version);
    println!("source        {}", args.model.display());
    println!("input width   {}", spec.input_width);
    println!();
    println!(
        "{:>5}  {:>7}  {:>7}  {:<10}  {:>5}  {:>12}  {:>11}  {:>13}",
        "layer", "in", "out", "activation", "bias", "parameters", "bytes", "FLOPs/sample"
    );
    for (i, layer) in spec.layers.iter().enumerate() {
        let params = layer.input as u64 * layer.output as u64
            + if layer.bias { layer.output as u64 } else { 0 };
        println!(
            "{:>5}  {:>7}  {:>7}  {:<10}  {:>5}  {:>12}  {:>11}  {:>13}",
            i,
            layer.input,
            layer.output,
            layer.activation.name(),
            if layer.bias { "yes" } else { "no" },
            params,
            fmt_bytes(4 * params),
            2 * layer.input as u64 * layer.output as u64
        );
    }
    println!();
    println!("parameters    {}", spec.param_count());
    println!(
        "weight bytes  {} (float32)",
        fmt_bytes(4 * spec.param_count())
    );
    println!(
        "packed bytes  {} (weights packed for the kernel in {})",
        fmt_bytes(compiled.weight_bytes() as u64),
        compiled.precision()
    );
    println!("FLOPs/sample  {}", spec.flops_per_sample());
    println!(
        "kernel        {} (chosen for this CPU; supported here: {})",
        compiled.kernel().name(),
        densebatch::KernelKind::all_supported()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let splits: Vec<String> = [1, 8, 32, 128, 512, 2048]
        .iter()
        .map(|&rows| {
            let split = match Predictor::split(&compiled, rows, threads, false) {
                Split::Inline => "inline".to_string(),
                Split::Rows { tasks, .. } => format!("{tasks} row tasks"),
                Split::Columns => "by columns".to_string(),
                _ => "other".to_string(),
            };
            format!("{rows}: {split}")
        })
        .collect();
    println!(
        "threads       {threads} (budget); batches of {}",
        splits.join(", ")
    );
    println!(
        "workspace     {} rows per block, {} per thread, {} for {threads} threads",
        compiled.block_rows(),
        fmt_bytes(compiled.workspace_bytes() as u64),
        fmt_bytes((compiled.workspace_bytes() * threads) as u64)
    );
    if args.precision != Precision::F32 {
        println!();
        accuracy::report(&model, &args.model, args.precision, args.rows, threads)?;
    }
    Ok(())
}
