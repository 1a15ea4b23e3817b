//! Tensors as the runtime holds them: a name, a data type, a shape and the raw little-endian
//! bytes (`bytes::Bytes`, so slices of a request body travel without copies). BYTES tensors use
//! Triton's layout: each element a 4-byte little-endian length followed by its bytes.

use bytes::Bytes;

pub use ferrite_driver_abi::DataType;

use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    pub data: Bytes,
}

impl Tensor {
    pub fn new(name: impl Into<String>, datatype: DataType, shape: Vec<i64>, data: Bytes) -> Self {
        Tensor {
            name: name.into(),
            datatype,
            shape,
            data,
        }
    }

    /// Number of elements the shape holds.
    pub fn element_count(&self) -> usize {
        element_count(&self.shape)
    }
}

/// Product of a shape's dimensions (negative dimensions count as 0).
pub fn element_count(shape: &[i64]) -> usize {
    shape
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(0))
        .fold(1usize, usize::saturating_mul)
}

/// Formats a shape as Triton does in messages: `[1,16]`.
pub fn shape_string(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(","))
}

/// Appends one BYTES element (see [`ferrite_driver_abi::bytes_layout`]).
pub use ferrite_driver_abi::bytes_layout::push as push_bytes_element;

/// Splits a BYTES tensor's data into its elements. Fails if the data ends inside an element.
pub fn bytes_elements(data: &[u8]) -> Result<Vec<&[u8]>> {
    ferrite_driver_abi::bytes_layout::split(data).map_err(|e| Error::invalid_arg(e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_errors_are_invalid_arguments() {
        let mut buf = Vec::new();
        push_bytes_element(&mut buf, b"ok");
        assert_eq!(bytes_elements(&buf).unwrap(), vec![&b"ok"[..]]);
        let e = bytes_elements(&[5, 0, 0, 0, b'a']).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArg);
        assert!(e.message().contains("claims 5 bytes"), "{}", e.message());
    }

    #[test]
    fn shapes() {
        assert_eq!(element_count(&[2, 3]), 6);
        assert_eq!(element_count(&[]), 1);
        assert_eq!(element_count(&[-1, 3]), 0);
        assert_eq!(shape_string(&[-1, 16]), "[-1,16]");
    }
}
