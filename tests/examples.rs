//! The user-facing examples, compiled into this test and run: each asserts what it prints, so an
//! example that stops working fails the tests.

#[path = "../examples/load_and_predict.rs"]
mod load_and_predict;

#[path = "../examples/onnx_predict.rs"]
mod onnx_predict;

#[path = "../examples/serve_two_models.rs"]
mod serve_two_models;

#[test]
fn load_and_predict_runs() {
    load_and_predict::main().unwrap();
}

#[test]
fn onnx_predict_runs() {
    onnx_predict::main().unwrap();
}

#[test]
fn serve_two_models_runs() {
    serve_two_models::main().unwrap();
}
