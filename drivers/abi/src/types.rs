//! The enumerations that cross the ABI, shared by the host and the SDK. On the wire they are
//! plain `u32`s (a foreign value must never become an invalid Rust enum): convert with
//! `from_raw`.

use std::fmt;

/// Triton's eight error codes (`TRITONSERVER_Error_Code`, same order).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Unknown = 0,
    Internal = 1,
    NotFound = 2,
    InvalidArg = 3,
    Unavailable = 4,
    Unsupported = 5,
    AlreadyExists = 6,
    Cancelled = 7,
}

impl ErrorCode {
    /// A raw code from the other side; unknown values become [`ErrorCode::Unknown`].
    pub fn from_raw(raw: u32) -> ErrorCode {
        match raw {
            1 => ErrorCode::Internal,
            2 => ErrorCode::NotFound,
            3 => ErrorCode::InvalidArg,
            4 => ErrorCode::Unavailable,
            5 => ErrorCode::Unsupported,
            6 => ErrorCode::AlreadyExists,
            7 => ErrorCode::Cancelled,
            _ => ErrorCode::Unknown,
        }
    }

    /// Triton's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unknown => "Unknown",
            ErrorCode::Internal => "Internal",
            ErrorCode::NotFound => "Not found",
            ErrorCode::InvalidArg => "Invalid argument",
            ErrorCode::Unavailable => "Unavailable",
            ErrorCode::Unsupported => "Unsupported",
            ErrorCode::AlreadyExists => "Already exists",
            ErrorCode::Cancelled => "Cancelled",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a buffer lives.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryKind {
    Cpu = 0,
    CpuPinned = 1,
    Gpu = 2,
    Neuron = 3,
}

impl MemoryKind {
    pub fn from_raw(raw: u32) -> Option<MemoryKind> {
        Some(match raw {
            0 => MemoryKind::Cpu,
            1 => MemoryKind::CpuPinned,
            2 => MemoryKind::Gpu,
            3 => MemoryKind::Neuron,
            _ => return None,
        })
    }
}

/// Tensor element types. The numbering is the model configuration's `DataType` enum
/// (`TYPE_BOOL` = 1 ... `TYPE_BF16` = 14), which is also `TRITONSERVER_DataType`'s.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    Bool = 1,
    Uint8 = 2,
    Uint16 = 3,
    Uint32 = 4,
    Uint64 = 5,
    Int8 = 6,
    Int16 = 7,
    Int32 = 8,
    Int64 = 9,
    Fp16 = 10,
    Fp32 = 11,
    Fp64 = 12,
    /// Variable-length bytes (`TYPE_STRING` in a config, `BYTES` on the wire).
    Bytes = 13,
    Bf16 = 14,
}

/// cbindgen:ignore
impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
        DataType::Bf16,
    ];

    pub fn from_raw(raw: u32) -> Option<DataType> {
        DataType::ALL.get((raw as usize).wrapping_sub(1)).copied()
    }

    /// The KServe v2 wire name: "BOOL", "INT32", "FP32", "BYTES", ...
    pub fn wire_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
            DataType::Bf16 => "BF16",
        }
    }

    /// The model configuration name: "TYPE_BOOL", "TYPE_INT32", "TYPE_STRING", ...
    pub fn config_name(self) -> &'static str {
        match self {
            DataType::Bool => "TYPE_BOOL",
            DataType::Uint8 => "TYPE_UINT8",
            DataType::Uint16 => "TYPE_UINT16",
            DataType::Uint32 => "TYPE_UINT32",
            DataType::Uint64 => "TYPE_UINT64",
            DataType::Int8 => "TYPE_INT8",
            DataType::Int16 => "TYPE_INT16",
            DataType::Int32 => "TYPE_INT32",
            DataType::Int64 => "TYPE_INT64",
            DataType::Fp16 => "TYPE_FP16",
            DataType::Fp32 => "TYPE_FP32",
            DataType::Fp64 => "TYPE_FP64",
            DataType::Bytes => "TYPE_STRING",
            DataType::Bf16 => "TYPE_BF16",
        }
    }

    pub fn from_wire_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.wire_name() == name)
    }

    /// Size of one element in bytes; `None` for variable-length BYTES.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_numbers_match_the_model_config_enum() {
        assert_eq!(DataType::Bool as u32, 1);
        assert_eq!(DataType::Int32 as u32, 8);
        assert_eq!(DataType::Bytes as u32, 13);
        assert_eq!(DataType::Bf16 as u32, 14);
        for d in DataType::ALL {
            assert_eq!(DataType::from_raw(d as u32), Some(d));
            assert_eq!(DataType::from_wire_name(d.wire_name()), Some(d));
        }
        assert_eq!(DataType::from_raw(0), None);
        assert_eq!(DataType::from_raw(15), None);
        assert_eq!(DataType::from_wire_name("TYPE_FP32"), None);
    }

    #[test]
    fn error_codes_round_trip_and_unknown_values_are_unknown() {
        for raw in 0..8 {
            assert_eq!(ErrorCode::from_raw(raw) as u32, raw);
        }
        assert_eq!(ErrorCode::from_raw(99), ErrorCode::Unknown);
    }
}
