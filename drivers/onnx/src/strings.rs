//! String tensors as raw bytes. ONNX Runtime's string tensors hold arbitrary bytes (C++
//! `std::string`, NUL included), but `ort`'s safe API insists on UTF-8 and copies through C
//! strings; Triton passes BYTES through untouched, so Ferrite does too: in through
//! `GetResizedStringTensorElementBuffer` (each element given by pointer and length), out
//! through `GetStringTensorContent` directly.

use std::ptr::{self, NonNull};

use ferrite_driver_sdk::{Error, Result, bytes_layout};
use ort::AsPointer;
use ort::memory::Allocator;
use ort::value::{DynValue, Value};

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

/// A string tensor of `shape` holding `elements` byte for byte (any bytes, NUL included).
/// `elements` has as many entries as `shape` has elements (the request was checked).
pub fn string_tensor(shape: &[i64], elements: &[&[u8]]) -> Result<DynValue> {
    let api = ort::api();
    let mut allocator = Allocator::default();
    let mut raw = ptr::null_mut();
    // SAFETY: the allocator is ONNX Runtime's default CPU allocator (it outlives the value:
    // `from_ptr` keeps a handle to it); `shape` is read for `shape.len()` entries.
    unsafe {
        check(
            (api.CreateTensorAsOrtValue)(
                allocator.ptr_mut(),
                shape.as_ptr(),
                shape.len(),
                ort::sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING,
                &mut raw,
            ),
            "creating a string tensor",
        )?
    };
    let raw = NonNull::new(raw)
        .ok_or_else(|| Error::internal("ONNX Runtime returned no string tensor"))?;
    // SAFETY: a tensor just created with this allocator, owned from here on (released on
    // drop, also when filling it fails below).
    let mut value: DynValue = unsafe { Value::from_ptr(raw, Some(&allocator)) };
    for (i, element) in elements.iter().enumerate() {
        let mut buffer = ptr::null_mut();
        // SAFETY: `i` is below the tensor's element count; ONNX Runtime returns a buffer of
        // exactly `element.len()` bytes for it, which is filled and not kept.
        unsafe {
            check(
                (api.GetResizedStringTensorElementBuffer)(
                    value.ptr_mut(),
                    i,
                    element.len(),
                    &mut buffer,
                ),
                "filling a string tensor",
            )?;
            if !element.is_empty() {
                ptr::copy_nonoverlapping(element.as_ptr(), buffer.cast::<u8>(), element.len());
            }
        }
    }
    Ok(value)
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
