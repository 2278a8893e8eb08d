//! What the quantized kernels need besides parameters: the bias width an operator
//! takes, and the builtin options a quantized operator must carry (the per-operator
//! facts are `rules::options`).

use crate::fb::BuiltinOperator as Op;
use crate::ir::Model;
use crate::rules::options;

use super::super::scheme::Width;
use super::IntegerOptions;

/// Bias width of an operator computing at `width`: int32 in int8; in 16x8 int64, or
/// int32 when asked (a 16x8 run's `--bias int32`) and the kernel accepts it (declared in
/// its options, `rules::options`).
pub(super) fn bias_bits_for(op: Op, width: Width, opts: &IntegerOptions) -> u32 {
    match width {
        Width::Int8 => 32,
        Width::Int16x8
            if opts.width == Width::Int16x8
                && opts.bias_bits == 32
                && options::declares_int32_bias_in_16x8(op) =>
        {
            32
        }
        Width::Int16x8 => 64,
    }
}

/// Options the quantized kernels need in 16x8 (`rules::options`): ADD/SUB's
/// general-scale path, and int32 biases declared where asked.
pub(super) fn fix_options(
    model: &mut Model,
    (si, oi): (usize, usize),
    width: Width,
    opts: &IntegerOptions,
) {
    if width != Width::Int16x8 {
        return;
    }
    let kind = model.builtin(&model.subgraphs[si].operators[oi]);
    let op = &mut model.subgraphs[si].operators[oi];
    options::set_general_scale_int16(kind, &mut op.builtin_options);
    if options::declares_int32_bias_in_16x8(kind) && bias_bits_for(kind, width, opts) == 32 {
        options::set_int32_bias(&mut op.builtin_options);
    }
}
