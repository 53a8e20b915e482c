//! The `densebatch` binary on good and bad inputs: good runs write what the library computes,
//! bad ones fail with one line naming the file, layer or argument, and a non-zero exit.

mod common;

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Output};

use common::TempDir;
use densebatch::prelude::*;
use ndarray::{Array2, Ix2};
use npyz::half::{bf16, f16};
use npyz::{DType, TypeStr, WriterBuilder};
use safetensors::tensor::{Dtype, TensorView};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn infer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_densebatch"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the binary runs")
}

/// Runs the binary and asserts it succeeded, showing its stderr if not.
fn infer_ok(args: &[&str]) -> Output {
    let out = infer(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a failed run: non-zero exit, one line on stderr starting with `error:` and containing
/// every piece of `expected`, no panic or backtrace.
fn assert_one_line_error(out: &Output, expected: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "exit 0; stderr: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    for piece in expected {
        assert!(err.contains(piece), "`{piece}` missing from: {err}");
    }
    err
}

fn digits_x() -> Array2<f32> {
    common::tensor_f32(&root().join("models/digits/test.safetensors"), "x")
        .into_dimensionality::<Ix2>()
        .unwrap()
}

fn digits_expected(x: &Array2<f32>) -> Array2<f32> {
    let model = Model::load(root().join("models/digits/model.json")).unwrap();
    model.compile().unwrap().predict(x.view()).unwrap()
}

/// The bytes of an `.npy` file of `values` stored as `descr` (e.g. `<f4`, `>f2`).
fn npy_bytes<T: npyz::Serialize>(
    descr: &str,
    shape: &[u64],
    values: impl IntoIterator<Item = T>,
) -> Vec<u8> {
    let type_str: TypeStr = descr.parse().unwrap();
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .dtype(DType::Plain(type_str))
        .shape(shape)
        .writer(Cursor::new(&mut bytes))
        .begin_nd()
        .unwrap();
    writer.extend(values).unwrap();
    writer.finish().unwrap();
    bytes
}

fn write_npy(path: &Path, x: &Array2<f32>) {
    let shape = [x.nrows() as u64, x.ncols() as u64];
    std::fs::write(path, npy_bytes("<f4", &shape, x.iter().copied())).unwrap();
}

fn read_npy2(path: &Path) -> Array2<f32> {
    let npy = npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap();
    let shape = npy.shape().to_vec();
    assert_eq!(npy.dtype().descr(), "'<f4'");
    let values = npy.into_vec::<f32>().unwrap();
    Array2::from_shape_vec((shape[0] as usize, shape[1] as usize), values).unwrap()
}

#[test]
fn default_run_classifies_the_digits_and_agrees_with_sklearn() {
    let out = infer_ok(&["digits"]);
    let text = stdout(&out);
    assert!(
        text.contains("accuracy     97.56 % (439/450 correct)"),
        "{text}"
    );
    assert!(text.contains("agreement    450/450"), "{text}");
    assert!(text.contains("batch time   p50"), "{text}");
    // On one thread nothing is allocated per batch. (With a pool, rayon's job queue allocates a
    // block now and then, which the per-batch figure shows honestly.)
    let single = stdout(&infer(&["digits", "--threads", "1"]));
    assert!(
        single.contains("allocated per batch: mean 0 B, max 0 B"),
        "{single}"
    );
}

#[test]
fn npy_run_writes_the_library_outputs_whatever_batch_and_threads() {
    let dir = TempDir::new("cli-npy");
    let x = digits_x();
    let input = dir.path("x.npy");
    write_npy(&input, &x);
    let expected = digits_expected(&x);
    for (batch, threads) in [("1024", "2"), ("7", "1"), ("64", "2")] {
        let output = dir.path(&format!("y-{batch}-{threads}.npy"));
        let out = infer_ok(&[
            "run",
            "models/digits",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--batch",
            batch,
            "--threads",
            threads,
        ]);
        assert!(stdout(&out).contains("samples/s"), "{}", stdout(&out));
        // stdout is a pipe here: no progress bar, nothing on stderr.
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            read_npy2(&output),
            expected,
            "batch {batch}, threads {threads}"
        );
    }
}

#[test]
fn csv_and_safetensors_runs_match_the_library_bit_for_bit() {
    let dir = TempDir::new("cli-kinds");
    let x = digits_x();
    let expected = digits_expected(&x);
    let csv_in = dir.path("x.csv");
    let mut text = (0..64)
        .map(|i| format!("p{i}"))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for row in x.outer_iter() {
        text += &row
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",");
        text += "\n";
    }
    std::fs::write(&csv_in, text).unwrap();
    let csv_out = dir.path("y.csv");
    infer_ok(&[
        "run",
        "models/digits/model.json",
        "--input",
        csv_in.to_str().unwrap(),
        "--output",
        csv_out.to_str().unwrap(),
    ]);
    let got: Vec<f32> = std::fs::read_to_string(&csv_out)
        .unwrap()
        .lines()
        .flat_map(|l| {
            l.split(',')
                .map(|v| v.parse::<f32>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(got, expected.iter().copied().collect::<Vec<_>>());

    // The bundled test file is read in place: tensor `x` of several.
    let st_out = dir.path("y.safetensors");
    infer_ok(&[
        "run",
        "models/digits",
        "--input",
        "models/digits/test.safetensors",
        "--tensor",
        "x",
        "--output",
        st_out.to_str().unwrap(),
    ]);
    let y = common::tensor_f32(&st_out, "y")
        .into_dimensionality::<Ix2>()
        .unwrap();
    assert_eq!(y, expected);
}

#[test]
fn float64_npy_is_converted() {
    let dir = TempDir::new("cli-f64");
    let x = digits_x();
    let path = dir.path("x64.npy");
    let shape = [x.nrows() as u64, x.ncols() as u64];
    std::fs::write(&path, npy_bytes("<f8", &shape, x.iter().map(|v| *v as f64))).unwrap();
    let output = dir.path("y.npy");
    infer_ok(&[
        "run",
        "models/digits",
        "--input",
        path.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_eq!(read_npy2(&output), digits_expected(&x));
}

#[test]
fn onnx_model_runs_and_inspect_reports() {
    let out = infer_ok(&[
        "inspect",
        "tests/fixtures/onnx/sklearn_mlp.onnx",
        "--threads",
        "3",
    ]);
    let text = stdout(&out);
    assert!(text.contains("parameters    577"), "{text}");
    assert!(text.contains("FLOPs/sample  1080"), "{text}");
    assert!(text.contains("threads       3"), "{text}");
    assert!(text.contains("kernel"), "{text}");

    let dir = TempDir::new("cli-import");
    infer_ok(&[
        "import",
        "tests/fixtures/onnx/sklearn_mlp.onnx",
        dir.0.to_str().unwrap(),
    ]);
    let imported = Model::load(dir.path("model.json")).unwrap();
    let direct =
        densebatch::import_onnx(root().join("tests/fixtures/onnx/sklearn_mlp.onnx")).unwrap();
    assert_eq!(imported, direct);
}

#[test]
fn malformed_npy_is_one_line_error() {
    let dir = TempDir::new("cli-bad-npy");
    let path = dir.path("bad.npy");
    std::fs::write(&path, b"\x93NUMPX\x01\x00garbage").unwrap();
    let out = infer(&["run", "models/digits", "--input", path.to_str().unwrap()]);
    assert_one_line_error(&out, &["bad.npy", "magic"]);

    // A header that promises more rows than the file holds.
    let mut bytes = npy_bytes("<f4", &[10, 64], std::iter::repeat_n(0f32, 10 * 64));
    bytes.truncate(bytes.len() - 4 * 64);
    std::fs::write(&path, bytes).unwrap();
    let out = infer(&["run", "models/digits", "--input", path.to_str().unwrap()]);
    assert_one_line_error(&out, &["bad.npy", "[10, 64]"]);

    let bytes = npy_bytes("<i4", &[2, 64], std::iter::repeat_n(0i32, 2 * 64));
    std::fs::write(&path, bytes).unwrap();
    let out = infer(&["run", "models/digits", "--input", path.to_str().unwrap()]);
    assert_one_line_error(&out, &["bad.npy", "<i4", "not a floating-point type"]);
}

#[test]
fn npy_shape_overflowing_64_bits_is_one_line_error() {
    let dir = TempDir::new("cli-npy-overflow");
    let path = dir.path("huge.npy");
    // 2^62 × 4 elements: the count overflows 64 bits. Header only, no data.
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }";
    let text = format!("{dict:<117}\n");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
    assert_eq!(bytes.len() % 64, 0);
    std::fs::write(&path, bytes).unwrap();
    let out = infer(&["run", "models/digits", "--input", path.to_str().unwrap()]);
    assert_one_line_error(&out, &["huge.npy", "4611686018427387904, 4"]);
}

/// The digits scaled so that most values need more than 16 bits (the pixels are sixteenths,
/// exact in every float type).
fn digits_scaled() -> Array2<f32> {
    digits_x().mapv(|v| v * 1.1 + 0.01)
}

#[test]
fn half_precision_and_big_endian_npy_match_the_library() {
    let dir = TempDir::new("cli-npy-dtypes");
    let x = digits_scaled();
    let shape = [x.nrows() as u64, x.ncols() as u64];
    // The values as read from a 16-bit file.
    let halves = x.mapv(|v| f16::from_f32(v).to_f32());
    assert_ne!(halves, x, "f16 rounds some inputs");
    let cases: [(&str, Vec<u8>, &Array2<f32>); 4] = [
        (
            "<f2",
            npy_bytes("<f2", &shape, x.iter().map(|v| f16::from_f32(*v))),
            &halves,
        ),
        (
            ">f2",
            npy_bytes(">f2", &shape, x.iter().map(|v| f16::from_f32(*v))),
            &halves,
        ),
        (">f4", npy_bytes(">f4", &shape, x.iter().copied()), &x),
        (
            ">f8",
            npy_bytes(">f8", &shape, x.iter().map(|v| *v as f64)),
            &x,
        ),
    ];
    for (descr, bytes, read_as) in cases {
        assert!(
            bytes.windows(3).any(|w| w == descr.as_bytes()),
            "written as {descr}"
        );
        let input = dir.path("x.npy");
        std::fs::write(&input, bytes).unwrap();
        let output = dir.path("y.npy");
        infer_ok(&[
            "run",
            "models/digits",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        assert_eq!(read_npy2(&output), digits_expected(read_as), "{descr}");
    }
}

#[test]
fn f16_and_bf16_safetensors_match_the_library() {
    let dir = TempDir::new("cli-st-dtypes");
    let x = digits_scaled();
    let shape = vec![x.nrows(), x.ncols()];
    let f16_bytes: Vec<u8> = x
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect();
    let bf16_bytes: Vec<u8> = x
        .iter()
        .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
        .collect();
    let cases = [
        (Dtype::F16, f16_bytes, x.mapv(|v| f16::from_f32(v).to_f32())),
        (
            Dtype::BF16,
            bf16_bytes,
            x.mapv(|v| bf16::from_f32(v).to_f32()),
        ),
    ];
    for (dtype, bytes, read_as) in cases {
        assert_ne!(read_as, x, "{dtype:?} rounds some inputs");
        let view = TensorView::new(dtype, shape.clone(), &bytes).unwrap();
        let input = dir.path("x.safetensors");
        std::fs::write(&input, safetensors::serialize([("x", view)], None).unwrap()).unwrap();
        let output = dir.path("y.npy");
        infer_ok(&[
            "run",
            "models/digits",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        assert_eq!(read_npy2(&output), digits_expected(&read_as), "{dtype:?}");
    }
}

#[test]
fn csv_with_wrong_column_count_is_one_line_error() {
    let dir = TempDir::new("cli-bad-csv");
    let path = dir.path("x.csv");
    let row = vec!["0.5"; 64].join(",");
    std::fs::write(
        &path,
        format!("{row}\n{row}\n{}\n", vec!["1"; 63].join(",")),
    )
    .unwrap();
    let output = dir.path("y.csv");
    let out = infer(&[
        "run",
        "models/digits",
        "--input",
        path.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--batch",
        "2",
    ]);
    assert_one_line_error(&out, &["x.csv", "line 3", "63 columns", "expected 64"]);
    assert!(!output.exists(), "a failed run leaves no partial output");

    // A whole file of the wrong width names the model's width.
    std::fs::write(&path, "1,2,3\n4,5,6\n").unwrap();
    let out = infer(&["run", "models/digits", "--input", path.to_str().unwrap()]);
    assert_one_line_error(&out, &["x.csv", "3 values", "takes 64"]);
}

#[test]
fn missing_model_is_one_line_error() {
    let out = infer(&[
        "run",
        "no/such/model.json",
        "--input",
        "models/digits/test.safetensors",
    ]);
    assert_one_line_error(&out, &["no/such/model.json"]);
    let out = infer(&["inspect", "no/such.onnx"]);
    assert_one_line_error(&out, &["no/such.onnx"]);
}

#[test]
fn unsupported_onnx_op_is_one_line_error() {
    let dir = TempDir::new("cli-onnx-op");
    let out = infer(&[
        "import",
        "tests/fixtures/onnx/unsupported_op.onnx",
        dir.0.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["unsupported_op.onnx", "node `leaky`", "LeakyRelu"]);
}

#[test]
fn empty_inputs_are_one_line_errors() {
    let dir = TempDir::new("cli-empty");
    let npy = dir.path("empty.npy");
    write_npy(&npy, &Array2::<f32>::zeros((0, 64)));
    let out = infer(&["run", "models/digits", "--input", npy.to_str().unwrap()]);
    assert_one_line_error(&out, &["empty.npy", "no rows"]);
    let csv = dir.path("empty.csv");
    std::fs::write(&csv, "").unwrap();
    let out = infer(&["run", "models/digits", "--input", csv.to_str().unwrap()]);
    assert_one_line_error(&out, &["empty.csv", "no rows"]);
}

#[test]
fn non_finite_input_names_the_row() {
    let dir = TempDir::new("cli-nan");
    let mut x = digits_x();
    x[[300, 5]] = f32::NAN;
    let npy = dir.path("x.npy");
    write_npy(&npy, &x);
    let out = infer(&[
        "run",
        "models/digits",
        "--input",
        npy.to_str().unwrap(),
        "--batch",
        "128",
    ]);
    assert_one_line_error(&out, &["x.npy", "row 300, column 5"]);
}

/// Reads a serve-sim JSON report.
fn serve_sim_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("serve-sim wrote its JSON");
    serde_json::from_str(&text).expect("valid JSON")
}

/// Asserts one model's (or the total's) serve-sim counts: every request sent is accounted for
/// exactly once, and the batch statistics agree with themselves. Returns `ok`.
fn assert_serve_outcome(o: &serde_json::Value) -> u64 {
    let n = |key: &str| {
        o[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no `{key}` in {o}"))
    };
    assert_eq!(
        n("sent"),
        n("ok") + n("rejected") + n("expired") + n("failed"),
        "{o}"
    );
    let closes = &o["batch_close"];
    let close_sum: u64 = ["full", "wait", "deadline", "drain"]
        .iter()
        .map(|k| closes[k].as_u64().unwrap())
        .sum();
    assert_eq!(close_sum, n("batches"), "{o}");
    let sizes = o["batch_sizes"].as_array().unwrap();
    let size_batches: u64 = sizes.iter().map(|p| p[1].as_u64().unwrap()).sum();
    assert_eq!(size_batches, n("batches"), "{o}");
    if n("ok") > 0 {
        let mean = o["mean_batch"].as_f64().unwrap();
        assert!(mean >= 1.0, "{o}");
        let l = &o["latency_us"];
        let p = |k: &str| l[k].as_f64().unwrap();
        assert!(
            p("p50") > 0.0 && p("p50") <= p("p90") && p("p90") <= p("p99"),
            "{o}"
        );
        assert!(p("p99") <= p("p999") && p("p999") <= p("max"), "{o}");
    }
    n("ok")
}

#[test]
fn serve_sim_two_models_answers_every_request_once() {
    let dir = TempDir::new("cli-serve-sim");
    let json = dir.path("serve.json");
    let plot = dir.path("serve.svg");
    let out = infer_ok(&[
        "serve-sim",
        "models/digits",
        "models/tiny-mlp",
        "--rate",
        "1500",
        "--duration",
        "1",
        "--max-batch",
        "8",
        "--max-wait-us",
        "500",
        "--threads",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("p99.9 µs") && text.contains("% by size"),
        "{text}"
    );

    let report = serve_sim_json(&json);
    assert!(
        report["capacity_rps"].is_null(),
        "--rate skips the capacity run"
    );
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let models = runs[0]["models"].as_array().unwrap();
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_ne!(names[0], names[1]);
    let mut ok_sum = 0;
    for model in models {
        let ok = assert_serve_outcome(model);
        assert!(ok > 0, "{model}");
        assert_eq!(model["offered_rps"].as_f64(), Some(1500.0));
        assert!(model["mean_batch"].as_f64().unwrap() <= 8.0, "{model}");
        ok_sum += ok;
    }
    let total = &runs[0]["total"];
    assert_eq!(assert_serve_outcome(total), ok_sum);
    assert_eq!(total["offered_rps"].as_f64(), Some(3000.0));
    let sent: u64 = models.iter().map(|m| m["sent"].as_u64().unwrap()).sum();
    assert_eq!(total["sent"].as_u64(), Some(sent));

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("mean batch size"),
        "{svg:.200}"
    );
}

#[test]
fn serve_sim_load_sweep_measures_capacity_first() {
    let dir = TempDir::new("cli-serve-sweep");
    let json = dir.path("sweep.json");
    let out = infer_ok(&[
        "serve-sim",
        "models/digits",
        "--loads",
        "0.2,0.4",
        "--duration",
        "0.3",
        "--arrivals",
        "constant",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(stdout(&out).contains("capacity"), "{}", stdout(&out));
    let report = serve_sim_json(&json);
    let capacity = report["capacity_rps"][0]["rps"].as_f64().unwrap();
    assert!(capacity > 0.0);
    let runs = report["runs"].as_array().unwrap();
    let loads: Vec<f64> = runs.iter().map(|r| r["load"].as_f64().unwrap()).collect();
    assert_eq!(loads, [0.2, 0.4]);
    for (run, load) in runs.iter().zip(loads) {
        let model = &run["models"][0];
        assert!(assert_serve_outcome(model) > 0, "{model}");
        let offered = model["offered_rps"].as_f64().unwrap();
        assert!(
            (offered - load * capacity).abs() < 1e-6 * capacity,
            "{model}"
        );
    }
}

#[test]
fn serve_sim_counts_expired_requests() {
    let dir = TempDir::new("cli-serve-expired");
    let json = dir.path("expired.json");
    // A deadline 1 µs after the scheduled send: requests expire in the queue, never computed.
    infer_ok(&[
        "serve-sim",
        "models/digits",
        "--rate",
        "1000",
        "--duration",
        "0.5",
        "--deadline-us",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    let total = &serve_sim_json(&json)["runs"][0]["total"];
    assert_serve_outcome(total);
    assert!(total["expired"].as_u64().unwrap() > 0, "{total}");
}

#[test]
fn serve_sim_bad_arguments_are_one_line_errors() {
    let out = infer(&["serve-sim", "no/such/model.json", "--rate", "100"]);
    assert_one_line_error(&out, &["no/such/model.json"]);
    let out = infer(&["serve-sim", "models/digits", "--bogus"]);
    assert_one_line_error(&out, &["--bogus"]);
    let out = infer(&["serve-sim", "models/digits", "--rate", "0"]);
    assert_one_line_error(&out, &["--rate", "positive"]);
    let out = infer(&[
        "serve-sim",
        "models/digits",
        "--rate",
        "5",
        "--loads",
        "0.5",
    ]);
    assert_one_line_error(&out, &["--loads"]);
    let out = infer(&[
        "serve-sim",
        "models/digits",
        "--rate",
        "5",
        "--plot",
        "x.png",
    ]);
    assert_one_line_error(&out, &["x.png", ".svg"]);
    let out = infer(&["serve-sim"]);
    assert_one_line_error(&out, &["MODELS"]);
}

#[cfg(target_os = "linux")]
#[test]
fn serve_sim_pins_threads_and_reports_what_they_and_the_cpus_did() {
    let dir = TempDir::new("cli-serve-pinned");
    let json = dir.path("pinned.json");
    // CPU 0 for both sides, so that the test runs on a one-CPU machine too (and warns).
    let out = infer_ok(&[
        "serve-sim",
        "models/digits",
        "--loads",
        "0.3",
        "--duration",
        "0.3",
        "--scheduler-cpus",
        "0",
        "--generator-cpus",
        "0",
        "--json",
        json.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("open loop") && text.contains("closed-loop"),
        "{text}"
    );
    assert!(
        text.contains("runq ms") && text.contains("cpu0 busy"),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("overlap"), "{err}");
    let report = serve_sim_json(&json);
    assert_eq!(report["scheduler_cpus"], "0");
    assert_eq!(report["generator_cpus"], "0");
    assert_eq!(
        report["pool_threads"], 1,
        "one pool thread per scheduler CPU"
    );
    // The loads refer to the open-loop capacity; the closed-loop one is reported beside it.
    let capacity = &report["capacity_rps"][0];
    let (open, closed) = (
        capacity["rps"].as_f64().unwrap(),
        capacity["closed_loop_rps"].as_f64().unwrap(),
    );
    assert!(open > 0.0 && closed > 0.0, "{capacity}");
    let run = &report["runs"][0];
    let model = &run["models"][0];
    assert_serve_outcome(model);
    let offered = model["offered_rps"].as_f64().unwrap();
    assert!((offered - 0.3 * open).abs() < 1e-6 * open, "{model}");
    assert!(model["p99_send_lag_us"].as_f64().unwrap() >= 0.0, "{model}");
    let bound = model["p99_bound_us"].as_f64().unwrap();
    let compute = model["full_batch_compute_us"].as_f64().unwrap();
    assert!(
        compute > 0.0 && (bound - (1000.0 + 2.0 * compute)).abs() < 1.0,
        "{model}"
    );

    let machine = &run["machine"];
    let threads = machine["threads"].as_array().unwrap();
    let named = |prefix: &str| {
        threads
            .iter()
            .find(|t| t["thread"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} thread in {machine}"))
    };
    for prefix in ["worker ", "pool 0", "sender ", "collector ", "records"] {
        assert_eq!(named(prefix)["pinned"], "0", "{machine}");
    }
    assert!(
        named("worker ")["cpu_ms"].as_f64().unwrap() > 0.0,
        "{machine}"
    );
    assert!(
        named("sender ")["voluntary_switches"].as_u64().unwrap() > 0,
        "{machine}"
    );
    let cpus = machine["cpus"].as_array().unwrap();
    assert!(
        !cpus.is_empty() && cpus[0]["steal_ms"].as_f64().is_some(),
        "{machine}"
    );
}

#[test]
fn serve_sim_bad_cpu_sets_are_one_line_errors() {
    let out = infer(&["serve-sim", "models/digits", "--scheduler-cpus", "x"]);
    assert_one_line_error(&out, &["--scheduler-cpus", "CPU list"]);
    let out = infer(&["serve-sim", "models/digits", "--generator-cpus", "3-1"]);
    assert_one_line_error(&out, &["--generator-cpus", "CPU list"]);
    // A CPU this machine does not have.
    let out = infer(&["serve-sim", "models/digits", "--scheduler-cpus", "1000"]);
    assert_one_line_error(&out, &["--scheduler-cpus"]);
}

/// Inputs the fuzzers found to crash the CLI's readers (tests/fixtures/fuzz/cli_input, kept with
/// the extension that picks the reader): each is a one-line error now, never a panic.
#[test]
fn fuzz_crash_inputs_are_one_line_errors() {
    let dir = root().join("tests/fixtures/fuzz/cli_input");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = infer(&["run", "models/digits", "--input", path.to_str().unwrap()]);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_one_line_error(&out, &[name]);
        replayed += 1;
    }
    assert!(replayed > 0, "no inputs under {}", dir.display());
}
