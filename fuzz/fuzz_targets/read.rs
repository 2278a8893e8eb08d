//! The reader must never panic: any byte string is either a model or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tflquant::read_bytes(data.to_vec().into());
});
