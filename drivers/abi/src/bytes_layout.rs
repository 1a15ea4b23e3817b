//! The layout of BYTES tensors as they cross the ABI (and the wire, in Triton's binary
//! format): each element a 4-byte little-endian length followed by that many bytes. The one
//! encoder and decoder the host, the SDK and the drivers share.

use std::fmt;

/// Appends one element.
pub fn push(out: &mut Vec<u8>, element: &[u8]) {
    out.extend_from_slice(&(element.len() as u32).to_le_bytes());
    out.extend_from_slice(element);
}

/// Data that does not hold whole elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutError {
    /// Index of the element that is cut short.
    pub element: usize,
    pub message: String,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LayoutError {}

/// Iterates over the elements of `data`; yields an error (and then stops) where the data ends
/// inside an element.
pub fn elements(data: &[u8]) -> Elements<'_> {
    Elements {
        data,
        pos: 0,
        index: 0,
    }
}

/// Splits `data` into its elements.
pub fn split(data: &[u8]) -> Result<Vec<&[u8]>, LayoutError> {
    elements(data).collect()
}

pub struct Elements<'a> {
    data: &'a [u8],
    pos: usize,
    index: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<&'a [u8], LayoutError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let index = self.index;
        let fail = |message: String| {
            Some(Err(LayoutError {
                element: index,
                message,
            }))
        };
        let Some(len_bytes) = self.data.get(self.pos..self.pos + 4) else {
            self.pos = self.data.len();
            return fail(format!(
                "BYTES element {index} is cut short inside its 4-byte length"
            ));
        };
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        let start = self.pos + 4;
        let Some(element) = self.data.get(start..start.saturating_add(len)) else {
            let remaining = self.data.len() - start;
            self.pos = self.data.len();
            return fail(format!(
                "BYTES element {index} claims {len} bytes but only {remaining} remain"
            ));
        };
        self.pos = start + len;
        self.index += 1;
        Some(Ok(element))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for s in ["", "a", "héllo"] {
            push(&mut buf, s.as_bytes());
        }
        assert_eq!(
            split(&buf).unwrap(),
            vec![&b""[..], b"a", "héllo".as_bytes()]
        );
        assert_eq!(split(&[]).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn cut_short() {
        let e = split(&[1, 0]).unwrap_err();
        assert_eq!(e.element, 0);
        assert!(e.message.contains("4-byte length"));
        let mut buf = Vec::new();
        push(&mut buf, b"ok");
        buf.extend_from_slice(&[5, 0, 0, 0, b'a']);
        let e = split(&buf).unwrap_err();
        assert_eq!(e.element, 1);
        assert_eq!(
            e.message,
            "BYTES element 1 claims 5 bytes but only 1 remain"
        );
        // a huge claimed length must not overflow
        assert!(split(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
