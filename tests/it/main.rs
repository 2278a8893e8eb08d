//! The one integration-test binary. Modules by topic; every model the tool writes is
//! checked with the official LiteRT runtime (see `common::litert_run`).

mod common;

mod acc_int8;
mod architecture;

mod bad_input;
mod behaviours;
mod calib;
mod calib_data;
mod cle;
mod closing_check;
mod compare;
mod custom_ops;
mod files;
mod idioms;
mod int4;
mod integer;
mod interp;
mod litert_capi;
mod lstm_variants;
mod memory;
mod mixed;
mod mixed_width;
mod observer_auto;
mod op_bounds;
mod planner;
mod ptq_weights;
mod qat;
mod quant_fuzz;
mod quant_harness;
mod recurrent;
mod rnn_svdf;
mod roundtrip;
mod scales;
mod streaming;
mod versions;
mod weights;
