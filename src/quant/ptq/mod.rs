//! Post-training quantization algorithms that change what the quantizer is given
//! (issue #15 item 3), each behind its own flag; see each module's header.

pub mod cle;
