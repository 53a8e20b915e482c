//! Seeded random models for tests and benches.

use ndarray::{Array1, Array2};
use ndarray_rand::RandomExt;
use ndarray_rand::rand_distr::Normal;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{LayerSpec, LayerWeights, Model, ModelSpec};
use crate::Activation;

/// A model with He-normal weights (`N(0, 2/fan_in)`) and `N(0, 0.01²)` biases, reproducible from
/// `seed`. `widths` lists the input width and then each layer's output width; hidden layers use
/// `hidden`, the last one `output`.
///
/// # Panics
/// If `widths` has fewer than two entries or holds a zero.
pub(crate) fn random_model(
    widths: &[usize],
    hidden: Activation,
    output: Activation,
    seed: u64,
) -> Model {
    assert!(
        widths.len() >= 2,
        "a model needs an input width and at least one layer"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let n = widths.len() - 1;
    let mut specs = Vec::with_capacity(n);
    let mut layers = Vec::with_capacity(n);
    for (i, w) in widths.windows(2).enumerate() {
        let (fan_in, fan_out) = (w[0], w[1]);
        let he = Normal::new(0.0f32, (2.0 / fan_in as f32).sqrt()).expect("finite std");
        let small = Normal::new(0.0f32, 0.01).expect("finite std");
        layers.push(LayerWeights {
            weight: Array2::random_using((fan_in, fan_out), he, &mut rng),
            bias: Some(Array1::random_using(fan_out, small, &mut rng)),
        });
        specs.push(LayerSpec {
            input: fan_in,
            output: fan_out,
            bias: true,
            activation: if i + 1 == n { output } else { hidden },
        });
    }
    let spec = ModelSpec {
        name: format!(
            "random-{}",
            widths
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join("x")
        ),
        version: format!("seed-{seed}"),
        input_width: widths[0],
        weights: "model.safetensors".into(),
        layers: specs,
    };
    Model::new(spec, layers).expect("a random model is valid by construction")
}
