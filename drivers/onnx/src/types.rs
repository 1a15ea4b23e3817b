//! ONNX <-> Triton data types.

use ferrite_driver_sdk::DataType;
use ort::value::TensorElementType as T;

/// The Triton type of an ONNX element type, if Triton has one.
pub fn from_ort(t: T) -> Option<DataType> {
    Some(match t {
        T::Bool => DataType::Bool,
        T::Uint8 => DataType::Uint8,
        T::Uint16 => DataType::Uint16,
        T::Uint32 => DataType::Uint32,
        T::Uint64 => DataType::Uint64,
        T::Int8 => DataType::Int8,
        T::Int16 => DataType::Int16,
        T::Int32 => DataType::Int32,
        T::Int64 => DataType::Int64,
        T::Float16 => DataType::Fp16,
        T::Float32 => DataType::Fp32,
        T::Float64 => DataType::Fp64,
        T::String => DataType::Bytes,
        T::Bfloat16 => DataType::Bf16,
        _ => return None,
    })
}

/// The ONNX element type of a Triton type.
pub fn to_ort(d: DataType) -> T {
    match d {
        DataType::Bool => T::Bool,
        DataType::Uint8 => T::Uint8,
        DataType::Uint16 => T::Uint16,
        DataType::Uint32 => T::Uint32,
        DataType::Uint64 => T::Uint64,
        DataType::Int8 => T::Int8,
        DataType::Int16 => T::Int16,
        DataType::Int32 => T::Int32,
        DataType::Int64 => T::Int64,
        DataType::Fp16 => T::Float16,
        DataType::Fp32 => T::Float32,
        DataType::Fp64 => T::Float64,
        DataType::Bytes => T::String,
        DataType::Bf16 => T::Bfloat16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_triton_type_round_trips() {
        for d in DataType::ALL {
            assert_eq!(from_ort(to_ort(d)), Some(d));
        }
    }
}
