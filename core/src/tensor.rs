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

/// Appends one BYTES element.
pub fn push_bytes_element(out: &mut Vec<u8>, element: &[u8]) {
    out.extend_from_slice(&(element.len() as u32).to_le_bytes());
    out.extend_from_slice(element);
}

/// Splits a BYTES tensor's data into its elements. Fails if the data ends inside an element.
pub fn bytes_elements(data: &[u8]) -> Result<Vec<&[u8]>> {
    let mut elements = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(len_bytes) = data.get(pos..pos + 4) else {
            return Err(Error::invalid_arg(
                "BYTES tensor data ends inside an element's 4-byte length",
            ));
        };
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        let start = pos + 4;
        let Some(element) = data.get(start..start + len) else {
            return Err(Error::invalid_arg(format!(
                "BYTES tensor element {} claims {len} bytes but only {} remain",
                elements.len(),
                data.len() - start
            )));
        };
        elements.push(element);
        pos = start + len;
    }
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let mut buf = Vec::new();
        for s in ["", "a", "héllo"] {
            push_bytes_element(&mut buf, s.as_bytes());
        }
        let els = bytes_elements(&buf).unwrap();
        assert_eq!(els, vec![&b""[..], b"a", "héllo".as_bytes()]);
    }

    #[test]
    fn truncated_bytes_are_refused() {
        assert!(bytes_elements(&[1, 0]).is_err());
        assert!(bytes_elements(&[5, 0, 0, 0, b'a']).is_err());
    }

    #[test]
    fn shapes() {
        assert_eq!(element_count(&[2, 3]), 6);
        assert_eq!(element_count(&[]), 1);
        assert_eq!(element_count(&[-1, 3]), 0);
        assert_eq!(shape_string(&[-1, 16]), "[-1,16]");
    }
}
