//! Safe views of a batch of requests, responses, and the gather/scatter helpers that turn a
//! batch into one tensor per input and back.

use std::borrow::Cow;

use ferrite_driver_abi as abi;
use ferrite_driver_abi::bytes_layout;

use crate::element::{self, Element};
use crate::{DataType, Error, Result, host};

/// An input tensor of a request, borrowed from the host for the duration of `execute`.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    pub name: &'a str,
    pub datatype: DataType,
    pub shape: &'a [i64],
    pub data: &'a [u8],
}

impl Tensor<'_> {
    /// Number of elements (product of the shape).
    pub fn element_count(&self) -> usize {
        self.shape.iter().map(|&d| d.max(0) as usize).product()
    }

    /// The elements as `T`s; an error naming the tensor when it holds another type.
    pub fn values<T: Element>(&self) -> Result<Vec<T>> {
        if self.datatype != T::DATATYPE {
            return Err(Error::invalid_arg(format!(
                "input '{}' is {}, expected {}",
                self.name,
                self.datatype.wire_name(),
                T::DATATYPE.wire_name()
            )));
        }
        Ok(element::values(self.data))
    }
}

/// One request of a batch.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    raw: &'a abi::Request,
}

impl<'a> Request<'a> {
    /// The client's request id ("" when none).
    pub fn id(&self) -> &'a str {
        // SAFETY: the host's strings are valid UTF-8 for the duration of execute.
        str_of(self.raw.id)
    }

    /// The request's inputs.
    pub fn inputs(&self) -> impl Iterator<Item = Tensor<'a>> + 'a {
        let raw = self.raw;
        // SAFETY: the host passes `input_count` tensors valid for the duration of execute.
        let tensors = unsafe { slice(raw.inputs, raw.input_count) };
        tensors.iter().map(tensor)
    }

    /// The input called `name`.
    pub fn input(&self, name: &str) -> Result<Tensor<'a>> {
        self.inputs().find(|t| t.name == name).ok_or_else(|| {
            Error::invalid_arg(format!("input '{name}' is missing from the request"))
        })
    }

    /// The outputs the client asked for; empty means all of them.
    pub fn requested_outputs(&self) -> impl Iterator<Item = &'a str> + 'a {
        let raw = self.raw;
        // SAFETY: as for inputs.
        let names = unsafe { slice(raw.requested_outputs, raw.requested_output_count) };
        names.iter().map(|s| str_of(*s))
    }

    /// Whether the client wants output `name`.
    pub fn wants_output(&self, name: &str) -> bool {
        self.raw.requested_output_count == 0 || self.requested_outputs().any(|n| n == name)
    }

    /// Parameter `key` of the request, if the client set it (bool, integer, float or string).
    pub fn parameter(&self, key: &str) -> Option<serde_json::Value> {
        self.parameters().remove(key)
    }

    /// The request's parameters (a JSON object; empty when none).
    pub fn parameters(&self) -> serde_json::Map<String, serde_json::Value> {
        let text = str_of(self.raw.parameters_json);
        match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => Default::default(),
        }
    }
}

fn str_of<'a>(s: abi::Str) -> &'a str {
    // SAFETY: the host passes strings that are valid for the duration of execute; non-UTF-8
    // cannot come from the host (it only passes strings it decoded as UTF-8), so fall back to
    // "" rather than trusting it.
    std::str::from_utf8(unsafe { s.as_bytes() }).unwrap_or("")
}

/// # Safety
/// `ptr` must point to `len` valid values for `'a`, or `len` must be 0.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

fn tensor<'a>(t: &'a abi::Tensor) -> Tensor<'a> {
    Tensor {
        name: str_of(t.name),
        // The host only passes valid datatypes; an unknown one reads as BYTES-less UINT8 would
        // be wrong, so map it to the closest safe thing: raw bytes.
        datatype: DataType::from_raw(t.datatype).unwrap_or(DataType::Uint8),
        // SAFETY: the host passes `rank` dims and `byte_size` bytes valid during execute.
        shape: unsafe { slice(t.shape, t.rank) },
        data: unsafe { slice(t.data, t.byte_size) },
    }
}

/// A response being built: add outputs, then [`Response::send`] it.
pub struct Response {
    raw: *mut abi::Response,
}

impl Response {
    /// Adds an output and returns its buffer (CPU memory) to fill.
    pub fn output(
        &mut self,
        name: &str,
        datatype: DataType,
        shape: &[i64],
        byte_size: usize,
    ) -> Result<&mut [u8]> {
        let mut memory = abi::Memory::CPU;
        let mut buffer: *mut u8 = std::ptr::null_mut();
        // SAFETY: `raw` is a live response (consumed only by send); all pointers outlive the call.
        let err = unsafe {
            (host::get().response_output)(
                self.raw,
                abi::Str::new(name),
                datatype as u32,
                shape.as_ptr(),
                shape.len(),
                byte_size,
                &mut memory,
                &mut buffer,
            )
        };
        host::check(err)?;
        if byte_size == 0 {
            return Ok(&mut []);
        }
        if buffer.is_null() || memory.kind != abi::MemoryKind::Cpu as u32 {
            return Err(Error::internal(format!(
                "the host gave no CPU buffer for output '{name}'"
            )));
        }
        // SAFETY: the host allocated `byte_size` bytes for this output, owned by the response,
        // which outlives this borrow of `self`.
        Ok(unsafe { std::slice::from_raw_parts_mut(buffer, byte_size) })
    }

    /// Adds an output holding a copy of `data`.
    pub fn output_from(
        &mut self,
        name: &str,
        datatype: DataType,
        shape: &[i64],
        data: &[u8],
    ) -> Result<()> {
        self.output(name, datatype, shape, data.len())?
            .copy_from_slice(data);
        Ok(())
    }

    /// Adds an output holding `values` (its data type is `T`'s).
    pub fn output_values<T: Element>(
        &mut self,
        name: &str,
        shape: &[i64],
        values: &[T],
    ) -> Result<()> {
        let buffer = self.output(name, T::DATATYPE, shape, std::mem::size_of_val(values))?;
        element::write_into(values, buffer);
        Ok(())
    }

    /// Sends the response as the request's final one.
    pub fn send(self) -> Result<()> {
        self.send_with(abi::RESPONSE_FLAG_FINAL)
    }

    /// Sends the response and keeps the request open for more: a decoupled model's
    /// responses before its last. End the request with a final [`Response::send`] or with
    /// [`Batch::complete`]. Refused for a model that is not decoupled.
    pub fn send_partial(self) -> Result<()> {
        self.send_with(0)
    }

    fn send_with(self, flags: u32) -> Result<()> {
        let raw = self.raw;
        std::mem::forget(self);
        // SAFETY: `raw` is live and is consumed here exactly once.
        let err = unsafe { (host::get().response_send)(raw, flags, std::ptr::null_mut()) };
        host::check(err)
    }

    /// Sends `error` in place of this response, as the request's final answer.
    pub fn send_error(self, error: &Error) -> Result<()> {
        let raw = self.raw;
        std::mem::forget(self);
        // SAFETY: as for send; ownership of the new error passes to the host.
        let err = unsafe {
            (host::get().response_send)(raw, abi::RESPONSE_FLAG_FINAL, host::to_abi(error))
        };
        host::check(err)
    }
}

impl Drop for Response {
    /// A response dropped unsent (e.g. by `?` while filling it) is freed without being sent:
    /// the request still gets its final answer, from `Batch::fail` or from the error that
    /// `execute` returns.
    fn drop(&mut self) {
        // SAFETY: `raw` is live (send/send_error forget self before consuming it).
        unsafe { (host::get().response_delete)(self.raw) }
    }
}

/// The requests handed to one `execute` call.
pub struct Batch<'a> {
    requests: &'a [abi::Request],
    stats: &'a mut abi::ExecuteStats,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(requests: &'a [abi::Request], stats: &'a mut abi::ExecuteStats) -> Self {
        Batch { requests, stats }
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    pub fn request(&self, index: usize) -> Request<'a> {
        Request {
            raw: &self.requests[index],
        }
    }

    pub fn requests(&self) -> impl Iterator<Item = Request<'a>> + 'a {
        self.requests.iter().map(|raw| Request { raw })
    }

    /// Starts the response to request `index`.
    pub fn respond(&self, index: usize) -> Result<Response> {
        let mut raw: *mut abi::Response = std::ptr::null_mut();
        // SAFETY: the request handle is live for the duration of execute.
        let err = unsafe { (host::get().response_new)(self.requests[index].handle, &mut raw) };
        host::check(err)?;
        if raw.is_null() {
            return Err(Error::internal("the host returned no response"));
        }
        Ok(Response { raw })
    }

    /// Answers request `index` with an error.
    pub fn fail(&self, index: usize, error: &Error) -> Result<()> {
        self.respond(index)?.send_error(error)
    }

    /// Whether nobody waits for request `index` any more (the client went away): a driver
    /// that takes long over a request, a decoupled stream above all, stops early.
    pub fn is_cancelled(&self, index: usize) -> bool {
        // SAFETY: as for complete.
        unsafe { (host::get().request_cancelled)(self.requests[index].handle) != 0 }
    }

    /// Ends request `index` of a decoupled model without another response (after its
    /// [`Response::send_partial`] ones, or with none at all).
    pub fn complete(&self, index: usize) -> Result<()> {
        // SAFETY: the request handle is live for the duration of execute; the SDK only runs
        // on hosts whose table has request_complete (ABI 1.1+, checked at entry).
        let err = unsafe {
            (host::get().request_complete)(self.requests[index].handle, abi::RESPONSE_FLAG_FINAL)
        };
        host::check(err)
    }

    /// Marks the end of input preparation (for the compute_input / compute_infer split).
    pub fn mark_infer_start(&mut self) {
        self.stats.infer_start_ns = host::now_ns();
    }

    /// Marks the end of the model run (for the compute_infer / compute_output split).
    pub fn mark_infer_end(&mut self) {
        self.stats.infer_end_ns = host::now_ns();
    }

    /// Concatenates input `name` of every request along the first (batch) dimension.
    /// Borrows when the batch holds one request.
    pub fn gather(&self, name: &str) -> Result<Gathered<'a>> {
        let tensors = self
            .requests()
            .map(|r| r.input(name))
            .collect::<Result<Vec<_>>>()?;
        gather(name, &tensors, None)
    }

    /// [`Batch::gather`] into a buffer the caller keeps from one batch to the next (an
    /// instance's scratch space), so a large batch is not allocated, and mapped and unmapped
    /// by the C allocator, every time. A single request is still borrowed, not copied.
    pub fn gather_into<'s>(&self, name: &str, scratch: &'s mut Vec<u8>) -> Result<Gathered<'s>>
    where
        'a: 's,
    {
        let tensors = self
            .requests()
            .map(|r| r.input(name))
            .collect::<Result<Vec<_>>>()?;
        gather(name, &tensors, Some(scratch))
    }

    /// Splits `data` (shape `[sum of batch sizes, ...]`) back along the first dimension into
    /// the given responses, `batch_sizes[i]` rows each, skipping requests that did not ask for
    /// this output.
    pub fn scatter(
        &self,
        responses: &mut [Response],
        batch_sizes: &[usize],
        name: &str,
        datatype: DataType,
        shape: &[i64],
        data: &[u8],
    ) -> Result<()> {
        let parts = split_rows(datatype, shape, data, batch_sizes)?;
        for (i, (part_shape, bytes)) in parts.into_iter().enumerate() {
            if self.request(i).wants_output(name) {
                responses[i].output_from(name, datatype, &part_shape, bytes)?;
            }
        }
        Ok(())
    }
}

/// An input gathered across a batch.
#[derive(Debug)]
pub struct Gathered<'a> {
    pub datatype: DataType,
    /// Shape of the whole batch (`[sum of batch sizes, ...]`).
    pub shape: Vec<i64>,
    /// Each request's share of the first dimension.
    pub batch_sizes: Vec<usize>,
    pub data: Cow<'a, [u8]>,
}

fn gather<'a>(
    name: &str,
    tensors: &[Tensor<'a>],
    scratch: Option<&'a mut Vec<u8>>,
) -> Result<Gathered<'a>> {
    let first = tensors
        .first()
        .ok_or_else(|| Error::internal("gather over an empty batch"))?;
    if first.shape.is_empty() {
        return Err(Error::invalid_arg(format!(
            "input '{name}' has no batch dimension to gather along"
        )));
    }
    let mut rows = 0i64;
    let mut batch_sizes = Vec::with_capacity(tensors.len());
    for t in tensors {
        if t.datatype != first.datatype
            || t.shape.len() != first.shape.len()
            || t.shape[1..] != first.shape[1..]
        {
            return Err(Error::invalid_arg(format!(
                "input '{name}' differs in type or shape between the requests of a batch: {}{:?} vs {}{:?}",
                first.datatype, first.shape, t.datatype, t.shape
            )));
        }
        rows += t.shape[0];
        batch_sizes.push(t.shape[0].max(0) as usize);
    }
    let mut shape = first.shape.to_vec();
    shape[0] = rows;
    let total: usize = tensors.iter().map(|t| t.data.len()).sum();
    let data = match scratch {
        _ if tensors.len() == 1 => Cow::Borrowed(first.data),
        Some(buf) => {
            buf.clear();
            buf.reserve(total);
            for t in tensors {
                buf.extend_from_slice(t.data);
            }
            Cow::Borrowed(&buf[..])
        }
        None => {
            let mut buf = Vec::with_capacity(total);
            for t in tensors {
                buf.extend_from_slice(t.data);
            }
            Cow::Owned(buf)
        }
    };
    Ok(Gathered {
        datatype: first.datatype,
        shape,
        batch_sizes,
        data,
    })
}

/// Splits a tensor along its first dimension into parts of `rows[i]` rows.
fn split_rows<'d>(
    datatype: DataType,
    shape: &[i64],
    data: &'d [u8],
    rows: &[usize],
) -> Result<Vec<(Vec<i64>, &'d [u8])>> {
    let total: usize = rows.iter().sum();
    if shape.first().copied() != Some(total as i64) {
        return Err(Error::internal(format!(
            "cannot split an output of shape {shape:?} into batches of {rows:?}"
        )));
    }
    let per_row: usize = shape[1..].iter().map(|&d| d.max(0) as usize).product();
    // Byte offset of each row boundary.
    let boundaries: Vec<usize> = match datatype.element_size() {
        Some(size) => (0..=total).map(|r| r * per_row * size).collect(),
        None => bytes_element_offsets(data, total * per_row)?
            .into_iter()
            .step_by(per_row.max(1))
            .collect(),
    };
    if boundaries.last().copied() != Some(data.len()) {
        return Err(Error::internal(format!(
            "output of shape {shape:?} holds {} bytes, which does not match its shape",
            data.len()
        )));
    }
    let mut parts = Vec::with_capacity(rows.len());
    let mut row = 0;
    for &n in rows {
        let mut part_shape = shape.to_vec();
        part_shape[0] = n as i64;
        parts.push((part_shape, &data[boundaries[row]..boundaries[row + n]]));
        row += n;
    }
    Ok(parts)
}

/// Byte offsets of the starts of `count` BYTES elements, plus the end.
fn bytes_element_offsets(data: &[u8], count: usize) -> Result<Vec<usize>> {
    let mut offsets = Vec::with_capacity(count + 1);
    offsets.push(0);
    let mut end = 0;
    for element in bytes_layout::elements(data).take(count) {
        let element = element.map_err(|e| Error::internal(e.message))?;
        end += 4 + element.len();
        offsets.push(end);
    }
    if offsets.len() != count + 1 {
        return Err(Error::internal(format!(
            "BYTES tensor holds {} elements, expected {count}",
            offsets.len() - 1
        )));
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(shape: &'a [i64], data: &'a [u8]) -> Tensor<'a> {
        Tensor {
            name: "x",
            datatype: DataType::Int32,
            shape,
            data,
        }
    }

    #[test]
    fn gather_borrows_one_and_concatenates_many() {
        let a = [1u8, 0, 0, 0, 2, 0, 0, 0];
        let b = [3u8, 0, 0, 0];
        let one = gather("x", &[t(&[1, 2], &a)], None).unwrap();
        assert!(matches!(one.data, Cow::Borrowed(_)));
        let g = gather("x", &[t(&[2, 1], &a), t(&[1, 1], &b)], None).unwrap();
        assert_eq!(g.shape, vec![3, 1]);
        assert_eq!(g.batch_sizes, vec![2, 1]);
        assert_eq!(&g.data[..], &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn gather_into_reuses_the_scratch_buffer() {
        let a = [1u8, 0, 0, 0, 2, 0, 0, 0];
        let b = [3u8, 0, 0, 0];
        let mut scratch = Vec::with_capacity(64);
        scratch.extend_from_slice(&[9; 5]); // left over from an earlier batch
        let ptr = scratch.as_ptr();
        let g = gather("x", &[t(&[2, 1], &a), t(&[1, 1], &b)], Some(&mut scratch)).unwrap();
        assert!(matches!(g.data, Cow::Borrowed(_)));
        assert_eq!(&g.data[..], &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(g.data.as_ptr(), ptr, "no new allocation");
        let mut scratch = Vec::new();
        let one = gather("x", &[t(&[1, 2], &a)], Some(&mut scratch)).unwrap();
        assert_eq!(
            one.data.as_ptr(),
            a.as_ptr(),
            "a single request is borrowed"
        );
    }

    #[test]
    fn gather_refuses_mismatched_shapes() {
        let a = [0u8; 8];
        let err = gather("x", &[t(&[1, 2], &a), t(&[2, 1], &a)], None).unwrap_err();
        assert!(err.message.contains("input 'x'"), "{}", err.message);
    }

    #[test]
    fn split_rows_fixed_and_bytes() {
        let data: Vec<u8> = (0..24).collect();
        let parts = split_rows(DataType::Int32, &[3, 2], &data, &[1, 2]).unwrap();
        assert_eq!(parts[0].0, vec![1, 2]);
        assert_eq!(parts[0].1, &data[0..8]);
        assert_eq!(parts[1].0, vec![2, 2]);
        assert_eq!(parts[1].1, &data[8..24]);

        let mut bytes = Vec::new();
        for s in ["a", "bc", "", "def"] {
            bytes.extend_from_slice(&(s.len() as u32).to_le_bytes());
            bytes.extend_from_slice(s.as_bytes());
        }
        let parts = split_rows(DataType::Bytes, &[2, 2], &bytes, &[1, 1]).unwrap();
        assert_eq!(parts[0].1.len(), 4 + 1 + 4 + 2);
        assert_eq!(parts[1].1.len(), 4 + 4 + 3);
    }

    #[test]
    fn split_rows_refuses_wrong_sizes() {
        let data = [0u8; 12];
        assert!(split_rows(DataType::Int32, &[2, 2], &data, &[1, 1]).is_err());
        assert!(split_rows(DataType::Int32, &[3, 1], &data, &[1, 1]).is_err());
        assert!(split_rows(DataType::Bytes, &[1], &[5, 0, 0, 0, 1], &[1]).is_err());
    }
}
