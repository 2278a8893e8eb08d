//! Sizes and classes of tensor element types.

use crate::fb::TensorType;

/// Bits one element takes in a dense buffer; `None` for types without a fixed size
/// (STRING, RESOURCE, VARIANT).
pub fn dtype_bits(t: TensorType) -> Option<u64> {
    use TensorType as T;
    Some(match t {
        T::Int2 => 2,
        T::Int4 | T::Uint4 => 4,
        T::Bool | T::Int8 | T::Uint8 | T::Float8E4m3fn | T::Float8E5m2 => 8,
        T::Float16 | T::Bfloat16 | T::Int16 | T::Uint16 => 16,
        T::Float32 | T::Int32 | T::Uint32 => 32,
        T::Float64 | T::Int64 | T::Uint64 | T::Complex64 => 64,
        T::Complex128 => 128,
        T::String | T::Resource | T::Variant => return None,
    })
}

/// Bytes `elements` values of type `t` take when packed densely (sub-byte types round up,
/// as the runtime's verifier does).
pub fn dtype_byte_size(t: TensorType, elements: u64) -> Option<u64> {
    let bits = dtype_bits(t)?;
    elements.checked_mul(bits).map(|b| b.div_ceil(8))
}

/// True for types that hold real numbers (floating point or quantized integers), i.e.
/// the types quantization may apply to. Booleans, strings and handles are not.
pub fn is_real_valued(t: TensorType) -> bool {
    !matches!(
        t,
        TensorType::Bool | TensorType::String | TensorType::Resource | TensorType::Variant
    )
}
