//! The one integration-test binary. Modules by topic; every model the tool writes is
//! checked with the official LiteRT runtime (see `common::litert_run`).

mod common;

mod bad_input;
mod calib;
mod compare;
mod custom_ops;
mod idioms;
mod int4;
mod integer;
mod interp;
mod litert_capi;
mod qat;
mod roundtrip;
mod streaming;
mod versions;
mod weights;
