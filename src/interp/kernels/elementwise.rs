//! Element-wise kernels with NumPy broadcasting: arithmetic (ADD … SQUARED_DIFFERENCE,
//! fused activations), comparisons, logical ops, unary maths, SELECT/SELECT_V2.

use crate::fb::{self, BuiltinOperator as B, BuiltinOptions as O};

use super::{
    Ctx, Ins, KResult, apply_act, bad, broadcast_index, broadcast_shapes, ensure, unsupported,
    value,
};
use crate::interp::value::{Data, Value};

/// Applies `f` over two broadcast operands.
fn bcast<T: Copy, U>(
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    f: impl Fn(T, T) -> U,
) -> KResult<(Vec<usize>, Vec<U>)> {
    let shape = broadcast_shapes(sa, sb)?;
    let n: usize = shape.iter().product();
    let out = if sa == sb {
        a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
    } else if b.len() == 1 {
        let y = b[0];
        if a.len() == n {
            a.iter().map(|&x| f(x, y)).collect()
        } else {
            broadcast_index(sa, &shape)
                .iter()
                .map(|&i| f(a[i], y))
                .collect()
        }
    } else if a.len() == 1 && b.len() == n {
        let x = a[0];
        b.iter().map(|&y| f(x, y)).collect()
    } else {
        let ia = broadcast_index(sa, &shape);
        let ib = broadcast_index(sb, &shape);
        ia.iter().zip(&ib).map(|(&i, &j)| f(a[i], b[j])).collect()
    };
    Ok((shape, out))
}

fn fused(ctx: &Ctx) -> fb::ActivationFunctionType {
    match ctx.opts() {
        Some(O::AddOptions(o)) => o.fused_activation_function,
        Some(O::SubOptions(o)) => o.fused_activation_function,
        Some(O::MulOptions(o)) => o.fused_activation_function,
        Some(O::DivOptions(o)) => o.fused_activation_function,
        _ => fb::ActivationFunctionType::None,
    }
}

/// A float binary op with broadcasting. ADD/SUB/MUL (residual connections, scales)
/// get their own instances of [`bcast`], so the element loop is inlined and
/// vectorised; the other ops call [`float_op`]'s function per element (its twin in
/// the tests). The same arithmetic either way.
fn float_bcast(
    b: B,
    p: &[f32],
    sx: &[usize],
    q: &[f32],
    sy: &[usize],
) -> KResult<(Vec<usize>, Vec<f32>)> {
    match b {
        B::Add => bcast(p, sx, q, sy, |x, y| x + y),
        B::Sub => bcast(p, sx, q, sy, |x, y| x - y),
        B::Mul => bcast(p, sx, q, sy, |x, y| x * y),
        _ => bcast(p, sx, q, sy, float_op(b)?),
    }
}

fn float_op(b: B) -> KResult<fn(f32, f32) -> f32> {
    Ok(match b {
        B::Add => |x, y| x + y,
        B::Sub => |x, y| x - y,
        B::Mul => |x, y| x * y,
        B::Div => |x, y| x / y,
        B::FloorDiv => |x, y| (x / y).floor(),
        B::FloorMod => |x, y| {
            let r = x % y;
            if r != 0.0 && ((y < 0.0) != (r < 0.0)) {
                r + y
            } else {
                r
            }
        },
        B::Pow => f32::powf,
        B::SquaredDifference => |x, y| (x - y) * (x - y),
        B::Maximum => f32::max,
        B::Minimum => f32::min,
        other => unsupported!("{} on FLOAT32", fb::op_name(other)),
    })
}

fn int_op(b: B) -> KResult<fn(i64, i64) -> Option<i64>> {
    Ok(match b {
        B::Add => |x, y| Some(x.wrapping_add(y)),
        B::Sub => |x, y| Some(x.wrapping_sub(y)),
        B::Mul => |x, y| Some(x.wrapping_mul(y)),
        B::Div => |x, y| x.checked_div(y),
        B::FloorDiv => |x, y| {
            x.checked_div_euclid(y).map(|_| {
                let q = x / y;
                if (x % y != 0) && ((x < 0) != (y < 0)) {
                    q - 1
                } else {
                    q
                }
            })
        },
        B::FloorMod => |x, y| {
            x.checked_rem(y).map(|r| {
                if r != 0 && ((y < 0) != (r < 0)) {
                    r + y
                } else {
                    r
                }
            })
        },
        B::Pow => |x, y| u32::try_from(y).ok().map(|e| x.wrapping_pow(e)),
        B::SquaredDifference => |x, y| Some((x - y).wrapping_mul(x - y)),
        B::Maximum => |x, y| Some(x.max(y)),
        B::Minimum => |x, y| Some(x.min(y)),
        other => unsupported!("{} on integers", fb::op_name(other)),
    })
}

fn cmp_op<T: PartialOrd>(b: B) -> fn(T, T) -> bool {
    match b {
        B::Equal => |x, y| x == y,
        B::NotEqual => |x, y| x != y,
        B::Less => |x, y| x < y,
        B::LessEqual => |x, y| x <= y,
        B::Greater => |x, y| x > y,
        _ => |x, y| x >= y,
    }
}

/// Narrows i64 results back to the operands' integer type.
fn int_data(like: &Data, v: Vec<i64>) -> KResult<Data> {
    Ok(match like {
        Data::I8(_) => Data::I8(v.into_iter().map(|x| x as i8).collect()),
        Data::U8(_) => Data::U8(v.into_iter().map(|x| x as u8).collect()),
        Data::I16(_) => Data::I16(v.into_iter().map(|x| x as i16).collect()),
        Data::I32(_) => Data::I32(v.into_iter().map(|x| x as i32).collect()),
        Data::U32(_) => Data::U32(v.into_iter().map(|x| x as u32).collect()),
        Data::I64(_) => Data::I64(v),
        other => unsupported!("integer result for {}", fb::dtype_name(other.dtype())),
    })
}

/// Binary arithmetic, comparison and logical ops.
pub(crate) fn binary(b: B, ctx: &Ctx, ins: &Ins) -> KResult<Value> {
    let (x, y) = (ins.get(0)?, ins.get(1)?);
    let is_cmp = matches!(
        b,
        B::Equal | B::NotEqual | B::Less | B::LessEqual | B::Greater | B::GreaterEqual
    );
    ensure!(
        x.dtype() == y.dtype(),
        "operand types differ: {} and {}",
        fb::dtype_name(x.dtype()),
        fb::dtype_name(y.dtype())
    );
    let (sx, sy) = (&x.shape, &y.shape);
    match (&x.data, &y.data) {
        (Data::Bool(p), Data::Bool(q)) => {
            let f: fn(bool, bool) -> bool = match b {
                B::LogicalAnd => |a, b| a && b,
                B::LogicalOr => |a, b| a || b,
                B::Equal => |a, b| a == b,
                B::NotEqual => |a, b| a != b,
                other => unsupported!("{} on BOOL", fb::op_name(other)),
            };
            let (s, v) = bcast(p, sx, q, sy, f)?;
            value(s, Data::Bool(v))
        }
        (Data::F32(p), Data::F32(q)) => {
            if is_cmp {
                let (s, v) = bcast(p, sx, q, sy, cmp_op::<f32>(b))?;
                return value(s, Data::Bool(v));
            }
            let (s, mut v) = float_bcast(b, p, sx, q, sy)?;
            apply_act(&mut v, fused(ctx))?;
            value(s, Data::F32(v))
        }
        (dx, dy) => {
            let (Some(p), Some(q)) = (dx.to_i64_vec(), dy.to_i64_vec()) else {
                unsupported!("{} on {}", fb::op_name(b), fb::dtype_name(dx.dtype()));
            };
            if is_cmp {
                let (s, v) = bcast(&p, sx, &q, sy, cmp_op::<i64>(b))?;
                return value(s, Data::Bool(v));
            }
            let f = int_op(b)?;
            let (s, v) = bcast(&p, sx, &q, sy, f)?;
            let Some(v) = v.into_iter().collect::<Option<Vec<i64>>>() else {
                bad!("integer division by zero or negative exponent");
            };
            let act = fused(ctx);
            ensure!(
                act == fb::ActivationFunctionType::None,
                "fused activation on integer data"
            );
            value(s, int_data(dx, v)?)
        }
    }
}

/// Round half to even, as TFLite's ROUND.
fn round_even(x: f32) -> f32 {
    let f = x.floor();
    let d = x - f;
    if d < 0.5 || (d == 0.5 && (f as i64) % 2 == 0) {
        f
    } else {
        f + 1.0
    }
}

/// Unary maths and LOGICAL_NOT.
pub(crate) fn unary(b: B, ins: &Ins) -> KResult<Value> {
    let x = ins.get(0)?;
    let data = match &x.data {
        Data::F32(v) => {
            let f: fn(f32) -> f32 = match b {
                B::Exp => f32::exp,
                B::Log => f32::ln,
                B::Sqrt => f32::sqrt,
                B::Rsqrt => |x| 1.0 / x.sqrt(),
                B::Square => |x| x * x,
                B::Neg => |x| -x,
                B::Abs => f32::abs,
                B::Sin => f32::sin,
                B::Cos => f32::cos,
                B::Floor => f32::floor,
                B::Ceil => f32::ceil,
                B::Round => round_even,
                B::Sign => |x| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        0.0
                    }
                },
                other => unsupported!("{} on FLOAT32", fb::op_name(other)),
            };
            Data::F32(v.iter().map(|&x| f(x)).collect())
        }
        Data::Bool(v) if b == B::LogicalNot => Data::Bool(v.iter().map(|&x| !x).collect()),
        d => {
            let Some(v) = d.to_i64_vec() else {
                unsupported!("{} on {}", fb::op_name(b), fb::dtype_name(d.dtype()));
            };
            let f: fn(i64) -> i64 = match b {
                B::Neg => |x| x.wrapping_neg(),
                B::Abs => |x| x.wrapping_abs(),
                B::Square => |x| x.wrapping_mul(x),
                B::Sign => i64::signum,
                other => unsupported!("{} on {}", fb::op_name(other), fb::dtype_name(d.dtype())),
            };
            int_data(d, v.into_iter().map(f).collect())?
        }
    };
    value(x.shape.clone(), data)
}

/// SELECT (condition of the same shape, or a vector selecting along the first
/// dimension) and SELECT_V2 (all three broadcast).
pub(crate) fn select(b: B, ins: &Ins) -> KResult<Value> {
    let (c, x, y) = (ins.get(0)?, ins.get(1)?, ins.get(2)?);
    let Data::Bool(cond) = &c.data else {
        bad!("condition must be BOOL, got {}", fb::dtype_name(c.dtype()));
    };
    ensure!(x.dtype() == y.dtype(), "value types differ");
    let mut out_shape = broadcast_shapes(&x.shape, &y.shape)?;
    let cond_shape: Vec<usize> = if b == B::Select && c.shape.len() == 1 && x.shape.len() > 1 {
        // Rank-1 condition picks whole rows.
        ensure!(
            c.shape[0] == x.shape[0],
            "condition {:?} does not match {:?}",
            c.shape,
            x.shape
        );
        let mut s = c.shape.clone();
        s.extend(std::iter::repeat_n(1, x.shape.len() - 1));
        s
    } else {
        c.shape.clone()
    };
    out_shape = broadcast_shapes(&cond_shape, &out_shape)?;
    let ic = broadcast_index(&cond_shape, &out_shape);
    let ix = broadcast_index(&x.shape, &out_shape);
    let iy = broadcast_index(&y.shape, &out_shape);
    // Build a flat index into the concatenation [x, y].
    let nx = x.len();
    let idx: Vec<usize> = (0..ic.len())
        .map(|k| if cond[ic[k]] { ix[k] } else { nx + iy[k] })
        .collect();
    let both = concat_data(&[&x.data, &y.data])?;
    value(out_shape, both.gather(&idx))
}

/// Concatenates the element vectors of values of one type.
pub(crate) fn concat_data(parts: &[&Data]) -> KResult<Data> {
    macro_rules! cat {
        ($var:ident) => {{
            let mut out = Vec::new();
            for p in parts {
                match p {
                    Data::$var(v) => out.extend_from_slice(v),
                    _ => bad!("operands have different types"),
                }
            }
            Data::$var(out)
        }};
    }
    let Some(first) = parts.first() else {
        bad!("nothing to concatenate");
    };
    Ok(match first {
        Data::F32(_) => cat!(F32),
        Data::F16(_) => cat!(F16),
        Data::F64(_) => cat!(F64),
        Data::I8(_) => cat!(I8),
        Data::U8(_) => cat!(U8),
        Data::I16(_) => cat!(I16),
        Data::I32(_) => cat!(I32),
        Data::U32(_) => cat!(U32),
        Data::I64(_) => cat!(I64),
        Data::Bool(_) => cat!(Bool),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_matches_numpy() {
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [10.0f32, 20.0];
        let (s, v) = bcast(&a, &[3, 1, 2], &b, &[2, 1], |x, y| x + y).unwrap();
        assert_eq!(s, vec![3, 2, 2]);
        assert_eq!(
            v,
            vec![
                11.0, 12.0, 21.0, 22.0, 13.0, 14.0, 23.0, 24.0, 15.0, 16.0, 25.0, 26.0
            ]
        );
    }

    #[test]
    fn inlined_add_sub_mul_give_float_ops_bits() {
        let a: Vec<f32> = (0..999).map(|i| (i as f32 * 0.37).sin() * 3e3).collect();
        let c: Vec<f32> = (0..999).map(|i| (i as f32 * 0.11).cos() / 7.0).collect();
        for op in [B::Add, B::Sub, B::Mul, B::Div] {
            for (sa, sb, bl) in [
                (vec![999], vec![999], 999),
                (vec![333, 3], vec![3], 3),
                (vec![999], vec![1], 1),
            ] {
                let fast = float_bcast(op, &a, &sa, &c[..bl], &sb).unwrap();
                let slow = bcast(&a, &sa, &c[..bl], &sb, float_op(op).unwrap()).unwrap();
                assert_eq!(fast.0, slow.0);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast.1), bits(&slow.1), "{op:?} {sa:?} {sb:?}");
            }
        }
    }

    #[test]
    fn round_is_half_to_even_and_floor_mod_follows_divisor_sign() {
        assert_eq!(
            [0.5, 1.5, 2.5, -0.5, -1.5].map(round_even),
            [0.0, 2.0, 2.0, -0.0, -2.0]
        );
        let fm = float_op(B::FloorMod).unwrap();
        assert_eq!(fm(-7.0, 3.0), 2.0);
        let fd = int_op(B::FloorDiv).unwrap();
        assert_eq!(fd(-7, 2), Some(-4));
        assert_eq!(fd(7, 0), None);
    }
}
