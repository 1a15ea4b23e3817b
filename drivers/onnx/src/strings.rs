//! String tensors as raw bytes. ONNX Runtime's string tensors hold arbitrary bytes (C++
//! `std::string`), but `ort`'s safe API insists on UTF-8; Triton passes BYTES through
//! untouched, so Ferrite does too: in through [`Utf8Data`] over raw bytes (ONNX Runtime only
//! copies them), out through `GetStringTensorContent` directly.

use ferrite_driver_sdk::{Error, Result, bytes_layout};
use ort::AsPointer;
use ort::value::{DynValue, Utf8Data};

/// One BYTES element, handed to ONNX Runtime as is.
/// (Owned: `ort` asks for `'static` elements.)
#[derive(Clone)]
pub struct RawString(pub Vec<u8>);

impl Utf8Data for RawString {
    fn as_utf8_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn check(status: ort::sys::OrtStatusPtr, what: &str) -> Result<()> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status returned by ONNX Runtime, read then released once.
    let message = unsafe {
        let text = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
            .to_string_lossy()
            .into_owned();
        (api.ReleaseStatus)(status.0);
        text
    };
    Err(Error::internal(format!("{what}: {message}")))
}

/// The elements of a string tensor, as Triton's length-prefixed BYTES.
pub fn string_tensor_bytes(value: &DynValue, elements: usize) -> Result<Vec<u8>> {
    let api = ort::api();
    let ptr = value.ptr();
    let mut total = 0usize;
    // SAFETY: `ptr` is a live string tensor of `elements` elements (the caller read its type
    // and shape); the buffers passed are as large as ONNX Runtime is told.
    unsafe {
        check(
            (api.GetStringTensorDataLength)(ptr, &mut total),
            "reading a string tensor",
        )?
    };
    let mut content = vec![0u8; total];
    let mut offsets = vec![0usize; elements + 1];
    if elements > 0 {
        unsafe {
            check(
                (api.GetStringTensorContent)(
                    ptr,
                    content.as_mut_ptr().cast(),
                    total,
                    offsets.as_mut_ptr(),
                    elements,
                ),
                "reading a string tensor",
            )?
        };
    }
    offsets[elements] = total;
    let mut out = Vec::with_capacity(total + 4 * elements);
    for w in offsets.windows(2) {
        let (start, end) = (w[0], w[1]);
        if start > end || end > total {
            return Err(Error::internal(
                "ONNX Runtime returned inconsistent string offsets",
            ));
        }
        bytes_layout::push(&mut out, &content[start..end]);
    }
    Ok(out)
}
