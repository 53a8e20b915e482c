//! `densebatch import`: an ONNX graph of dense layers into our format.

use anyhow::{Context, Result};

use crate::cli::ImportArgs;

pub fn run(args: &ImportArgs) -> Result<()> {
    let mut model = densebatch::import_onnx(&args.onnx).context("cannot import")?;
    if let Some(name) = &args.name {
        let mut spec = model.spec().clone();
        spec.name = name.clone();
        model = densebatch::Model::new(spec, model.layers().to_vec())?;
    }
    let spec_path = if args.out.extension().is_some_and(|e| e == "json") {
        args.out.clone()
    } else {
        std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;
        args.out.join("model.json")
    };
    model.save(&spec_path)?;
    let spec = model.spec();
    println!(
        "imported {} → {}: {} layers, {} → {}, {} parameters",
        args.onnx.display(),
        spec_path.display(),
        spec.layers.len(),
        spec.input_width,
        spec.output_width(),
        spec.param_count()
    );
    for (i, layer) in spec.layers.iter().enumerate() {
        println!(
            "  layer {i}: {} → {} {}{}",
            layer.input,
            layer.output,
            layer.activation.name(),
            if layer.bias { " +bias" } else { "" }
        );
    }
    Ok(())
}
