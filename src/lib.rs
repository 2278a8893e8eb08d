//! tflquant: read, inspect, rewrite and quantize TensorFlow Lite (LiteRT) models.
//!
//! Pipeline: [`reader`] (mmap, verify once) → [`ir::Model`] → rewrites → [`writer`]
//! (aligned, deterministic, atomic). See `docs/ARCHITECTURE.md`.

// Graph code indexes parallel vectors (tensors, producers, consumers) by position.
#![allow(clippy::needless_range_loop)]

pub mod calib;
pub mod compare;
pub mod data;
pub mod error;
pub mod fb;
pub mod inspect;
pub mod interp;
pub mod ir;
pub mod litert;
pub mod quant;
pub mod reader;
pub mod rules;
pub mod units;
pub mod writer;

pub use error::{Error, Result};
pub use ir::Model;
pub use reader::{read_bytes, read_path};
