//! The host's side of the ABI: the `extern "C"` functions handed to drivers in
//! [`HOST_API`], and the host-owned objects behind the opaque handles (errors, requests,
//! responses, models being loaded).

use std::sync::atomic::{AtomicBool, Ordering};

use ferrite_driver_abi as abi;
use parking_lot::Mutex;

use crate::tensor::{DataType, element_count};
use crate::{Error, ErrorCode, Result, clock};

/// Where a request's responses go. Implemented by the scheduler, which post-processes
/// outputs (requested subset, classification) and hands them to the frontend.
pub trait ResponseSink: Send + Sync {
    fn send(&self, outputs: Result<Vec<RawOutput>>, final_response: bool);
    /// The request ends without another response (a decoupled model's flags-only final).
    fn complete(&self);
    /// Whether the model is decoupled: it may send any number of responses, the last one
    /// (or a [`ResponseSink::complete`]) final. Other models send exactly one, final.
    fn decoupled(&self) -> bool {
        false
    }
    /// Called once the execution that answered the request is fully accounted for (its
    /// statistics recorded); a sink that held its final response back delivers it now.
    fn flush(&self) {}
    /// Whether nobody waits for the responses any more (the client went away).
    fn abandoned(&self) -> bool {
        false
    }
}

/// An output as a driver produced it.
#[derive(Debug)]
pub struct RawOutput {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

/// The host object behind a request's [`abi::RequestHandle`].
pub struct RequestSlot {
    sink: Box<dyn ResponseSink>,
    finished: AtomicBool,
}

impl RequestSlot {
    pub fn new(sink: Box<dyn ResponseSink>) -> RequestSlot {
        RequestSlot {
            sink,
            finished: AtomicBool::new(false),
        }
    }

    pub fn handle(&self) -> *mut abi::RequestHandle {
        (self as *const RequestSlot).cast_mut().cast()
    }

    /// Whether the request got its final response.
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// See [`ResponseSink::abandoned`].
    pub fn abandoned(&self) -> bool {
        self.sink.abandoned()
    }

    /// See [`ResponseSink::flush`].
    pub fn flush(&self) {
        self.sink.flush();
    }

    /// Sends `error` as the final response unless one was sent already.
    pub fn finish_with(&self, error: Error) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            self.sink.send(Err(error), true);
        }
    }
}

/// The host object behind an [`abi::Response`].
struct PendingResponse {
    slot: *const RequestSlot,
    outputs: Vec<RawOutput>,
}

/// The host object behind an [`abi::Model`] handle during `model_load`.
#[derive(Default)]
pub struct ModelLoadSlot {
    pub config_json: Mutex<Option<String>>,
}

impl ModelLoadSlot {
    pub fn handle(&self) -> *mut abi::Model {
        (self as *const ModelLoadSlot).cast_mut().cast()
    }
}

/// Boxes an error into the opaque pointer the ABI passes around.
pub fn error_into_abi(error: Error) -> *mut abi::Error {
    Box::into_raw(Box::new(error)).cast()
}

/// Takes back an error a driver returned (null = success).
///
/// # Safety
/// `err` must be null or a pointer made by [`error_into_abi`] / `error_new` and not freed.
pub unsafe fn error_from_abi(err: *mut abi::Error) -> Result<()> {
    if err.is_null() {
        Ok(())
    } else {
        Err(*unsafe { Box::from_raw(err.cast::<Error>()) })
    }
}

unsafe extern "C" fn log(level: u32, message: abi::Str) {
    // SAFETY: drivers pass a string valid for the call.
    let message = unsafe { message.to_str_lossy() };
    match level {
        abi::LOG_ERROR => tracing::error!(target: "ferrite::driver", "{message}"),
        abi::LOG_WARN => tracing::warn!(target: "ferrite::driver", "{message}"),
        abi::LOG_INFO => tracing::info!(target: "ferrite::driver", "{message}"),
        _ => tracing::debug!(target: "ferrite::driver", "{message}"),
    }
}

unsafe extern "C" fn error_new(code: u32, message: abi::Str) -> *mut abi::Error {
    // SAFETY: drivers pass a string valid for the call; the host copies it.
    let message = unsafe { message.to_str_lossy() }.into_owned();
    error_into_abi(Error::new(ErrorCode::from_raw(code), message))
}

unsafe extern "C" fn error_code(err: *const abi::Error) -> u32 {
    if err.is_null() {
        return ErrorCode::Unknown as u32;
    }
    // SAFETY: a live error made by the host.
    unsafe { &*err.cast::<Error>() }.code() as u32
}

unsafe extern "C" fn error_message(err: *const abi::Error) -> abi::Str {
    if err.is_null() {
        return abi::Str::EMPTY;
    }
    // SAFETY: a live error made by the host; the string lives as long as the error.
    abi::Str::new(unsafe { &*err.cast::<Error>() }.message())
}

unsafe extern "C" fn error_delete(err: *mut abi::Error) {
    // SAFETY: a live error made by the host, freed once.
    let _ = unsafe { error_from_abi(err) };
}

unsafe extern "C" fn model_set_config(
    model: *mut abi::Model,
    config_json: abi::Str,
) -> *mut abi::Error {
    if model.is_null() {
        return error_into_abi(Error::invalid_arg("model_set_config: null model handle"));
    }
    // SAFETY: the handle is the live ModelLoadSlot of the model_load call in progress.
    let slot = unsafe { &*model.cast::<ModelLoadSlot>() };
    let text = unsafe { config_json.to_str_lossy() }.into_owned();
    *slot.config_json.lock() = Some(text);
    std::ptr::null_mut()
}

unsafe extern "C" fn response_new(
    request: *mut abi::RequestHandle,
    response: *mut *mut abi::Response,
) -> *mut abi::Error {
    if request.is_null() || response.is_null() {
        return error_into_abi(Error::invalid_arg("response_new: null argument"));
    }
    // SAFETY: the handle is a live RequestSlot for the duration of execute.
    let slot = unsafe { &*request.cast::<RequestSlot>() };
    if slot.finished() {
        return error_into_abi(Error::internal(
            "response_new: the request already got its final response",
        ));
    }
    let pending = Box::new(PendingResponse {
        slot,
        outputs: Vec::new(),
    });
    // SAFETY: `response` is a valid out-pointer.
    unsafe { *response = Box::into_raw(pending).cast() };
    std::ptr::null_mut()
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn response_output(
    response: *mut abi::Response,
    name: abi::Str,
    datatype: u32,
    shape: *const i64,
    rank: usize,
    byte_size: usize,
    memory: *mut abi::Memory,
    buffer: *mut *mut u8,
) -> *mut abi::Error {
    if response.is_null() || buffer.is_null() || (shape.is_null() && rank > 0) {
        return error_into_abi(Error::invalid_arg("response_output: null argument"));
    }
    // SAFETY: a live response from response_new, used by one thread.
    let pending = unsafe { &mut *response.cast::<PendingResponse>() };
    let name = unsafe { name.to_str_lossy() }.into_owned();
    let shape = if rank == 0 {
        Vec::new()
    } else {
        unsafe { std::slice::from_raw_parts(shape, rank) }.to_vec()
    };
    let Some(datatype) = DataType::from_raw(datatype) else {
        return error_into_abi(Error::invalid_arg(format!(
            "output '{name}': unknown data type {datatype}"
        )));
    };
    if shape.iter().any(|&d| d < 0) {
        return error_into_abi(Error::invalid_arg(format!(
            "output '{name}': shape {shape:?} has a negative dimension"
        )));
    }
    if let Some(size) = datatype.element_size() {
        let expected = element_count(&shape) * size;
        if expected != byte_size {
            return error_into_abi(Error::invalid_arg(format!(
                "output '{name}': {byte_size} bytes do not hold a {datatype} tensor of shape {shape:?} ({expected} bytes)"
            )));
        }
    }
    if pending.outputs.iter().any(|o| o.name == name) {
        return error_into_abi(Error::invalid_arg(format!(
            "output '{name}' was added to the response twice"
        )));
    }
    let mut data = vec![0u8; byte_size];
    // SAFETY: valid out-pointers. The Vec's heap buffer does not move when the Vec itself is
    // moved into `outputs`, so the pointer stays valid until the response is sent.
    unsafe {
        *buffer = data.as_mut_ptr();
        if !memory.is_null() {
            *memory = abi::Memory::CPU;
        }
    }
    pending.outputs.push(RawOutput {
        name,
        datatype,
        shape,
        data,
    });
    std::ptr::null_mut()
}

unsafe extern "C" fn response_send(
    response: *mut abi::Response,
    flags: u32,
    error: *mut abi::Error,
) -> *mut abi::Error {
    // SAFETY: the error (if any) is passed to us; the response was made by response_new and is
    // consumed here exactly once.
    let error = unsafe { error_from_abi(error) };
    if response.is_null() {
        return error_into_abi(Error::invalid_arg("response_send: null response"));
    }
    let pending = unsafe { Box::from_raw(response.cast::<PendingResponse>()) };
    let slot = unsafe { &*pending.slot };
    let is_final = flags & abi::RESPONSE_FLAG_FINAL != 0;
    if !is_final && !slot.sink.decoupled() {
        // The request still needs its one, final, response.
        return error_into_abi(Error::internal(
            "response_send: a response without the final flag, but the model is not decoupled (model_transaction_policy { decoupled: true }); its one response must be final",
        ));
    }
    if is_final {
        if slot.finished.swap(true, Ordering::AcqRel) {
            return error_into_abi(Error::internal(
                "response_send: the request already got its final response",
            ));
        }
    } else if slot.finished() {
        return error_into_abi(Error::internal(
            "response_send: the request already got its final response",
        ));
    }
    let result = error.map(|()| pending.outputs);
    // A panic must not unwind into the driver's frames (that aborts the process): turn it
    // into an error for this request instead.
    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        slot.sink.send(result, is_final)
    }));
    if sent.is_err() {
        let error = Error::internal(
            "the server failed while post-processing the response (a bug: see the log)",
        );
        tracing::error!("panic in response post-processing");
        if is_final {
            slot.sink.send(Err(error), true);
        }
    }
    std::ptr::null_mut()
}

unsafe extern "C" fn request_complete(
    request: *mut abi::RequestHandle,
    flags: u32,
) -> *mut abi::Error {
    if request.is_null() {
        return error_into_abi(Error::invalid_arg("request_complete: null request"));
    }
    if flags & abi::RESPONSE_FLAG_FINAL == 0 {
        return error_into_abi(Error::invalid_arg(
            "request_complete: flags must hold RESPONSE_FLAG_FINAL",
        ));
    }
    // SAFETY: the handle is a live RequestSlot for the duration of execute.
    let slot = unsafe { &*request.cast::<RequestSlot>() };
    if !slot.sink.decoupled() {
        return error_into_abi(Error::internal(
            "request_complete: the model is not decoupled; send its one response with the final flag",
        ));
    }
    if slot.finished.swap(true, Ordering::AcqRel) {
        return error_into_abi(Error::internal(
            "request_complete: the request already got its final response",
        ));
    }
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| slot.sink.complete())).is_err() {
        tracing::error!("panic while completing a request");
    }
    std::ptr::null_mut()
}

unsafe extern "C" fn request_cancelled(request: *mut abi::RequestHandle) -> u32 {
    if request.is_null() {
        return 0;
    }
    // SAFETY: the handle is a live RequestSlot for the duration of execute.
    let slot = unsafe { &*request.cast::<RequestSlot>() };
    u32::from(slot.abandoned())
}

unsafe extern "C" fn response_delete(response: *mut abi::Response) {
    if !response.is_null() {
        // SAFETY: a response made by response_new and not sent, freed once.
        drop(unsafe { Box::from_raw(response.cast::<PendingResponse>()) });
    }
}

unsafe extern "C" fn now_ns() -> u64 {
    clock::now_ns()
}

unsafe extern "C" fn metric(
    name: abi::Str,
    help: abi::Str,
    kind: u32,
    labels_json: abi::Str,
    value: f64,
) -> *mut abi::Error {
    // SAFETY: the driver passes strings valid for the call.
    let (name, help, labels_json) = unsafe {
        (
            name.to_str_lossy().into_owned(),
            help.to_str_lossy().into_owned(),
            labels_json.as_bytes().to_vec(),
        )
    };
    let kind = match kind {
        abi::METRIC_COUNTER => crate::custom_metrics::MetricKind::Counter,
        abi::METRIC_GAUGE => crate::custom_metrics::MetricKind::Gauge,
        other => {
            return error_into_abi(Error::invalid_arg(format!(
                "metric '{name}': kind {other} is neither METRIC_COUNTER nor METRIC_GAUGE"
            )));
        }
    };
    let labels = if labels_json.is_empty() {
        Vec::new()
    } else {
        match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&labels_json) {
            Ok(map) => {
                let mut labels = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let Some(v) = v.as_str() else {
                        return error_into_abi(Error::invalid_arg(format!(
                            "metric '{name}': label '{k}' is not a string"
                        )));
                    };
                    labels.push((k, v.to_string()));
                }
                labels
            }
            Err(e) => {
                return error_into_abi(Error::invalid_arg(format!(
                    "metric '{name}': the labels are not a JSON object of strings: {e}"
                )));
            }
        }
    };
    match crate::custom_metrics::record(&name, &help, kind, &labels, value) {
        Ok(()) => std::ptr::null_mut(),
        Err(e) => error_into_abi(e),
    }
}

/// The table every driver receives.
pub static HOST_API: abi::HostApi = abi::HostApi {
    size: std::mem::size_of::<abi::HostApi>(),
    abi_major: abi::ABI_MAJOR,
    abi_minor: abi::ABI_MINOR,
    log,
    error_new,
    error_code,
    error_message,
    error_delete,
    model_set_config,
    response_new,
    response_output,
    response_send,
    response_delete,
    now_ns,
    request_complete,
    request_cancelled,
    metric,
};
