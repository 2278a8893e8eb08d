//! The quantizer on mutated models: whatever the reader accepts goes through every mode
//! (integer modes with a fixed one-sample calibration, see the harness); each mode
//! either writes a model that passes `ir::verify` and reads back, or rejects the input
//! with an exit-code-2 error. A panic or an internal error (exit 1) is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/it/quant_harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = tflquant::read_bytes(data.to_vec().into()) else {
        return;
    };
    if let Err(finding) = harness::check(&model) {
        panic!("{finding}");
    }
});
