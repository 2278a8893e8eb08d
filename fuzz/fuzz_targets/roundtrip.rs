//! Whatever the reader accepts, the writer writes, the reader accepts again, and a
//! second write gives the same bytes (read → write → read is stable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tflquant::writer::{to_bytes, WriteOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(model) = tflquant::read_bytes(data.to_vec().into()) else {
        return;
    };
    let opts = WriteOptions::default();
    let first = to_bytes(&model, &opts).expect("an accepted model must be writable");
    let again = tflquant::read_bytes(first.clone().into()).expect("our own output must read back");
    let second = to_bytes(&again, &opts).expect("writable");
    assert_eq!(first, second, "read → write is not stable");
});
