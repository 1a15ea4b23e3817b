//! The driver ABI: the `#[repr(C)]` types, constants and function-pointer tables that cross
//! between the Ferrite host (`ferrite-core`) and a device driver shared library.
//!
//! Rules of the ABI (see `DESIGN.md` and `include/ferrite_driver.h`):
//! - A driver exports one symbol, [`DRIVER_ENTRY_SYMBOL`], of type [`DriverEntryFn`]. It receives
//!   the host's table and returns the driver's table, both living for the rest of the process.
//! - Every table and info struct begins with its `size` in bytes. Fields are only ever appended
//!   (a minor version bump), so a reader checks `size` before touching a field newer than the
//!   minor it was built against.
//! - The host refuses a driver whose major differs or whose minor is newer than the host's.
//! - Only `execute` is required; every other driver entry point is optional (a null pointer).
//! - Errors cross as a host-owned [`Error`] made with [`HostApi::error_new`]; a null error
//!   pointer means success. Ownership of an error passes to whoever receives it.
//! - Strings cross as [`Str`] (pointer + length, UTF-8, not NUL-terminated), borrowed for the
//!   duration of the call unless stated otherwise.
//! - Handles are opaque: [`Response`], [`Model`] and [`Error`] are the host's, the `*mut c_void`
//!   states are the driver's.

use std::ffi::c_void;
use std::fmt;

pub mod bytes_layout;
mod types;
pub use types::{DataType, ErrorCode, MemoryKind};

/// Major version: bumped on any incompatible change. The host refuses other majors.
pub const ABI_MAJOR: u32 = 1;
/// Minor version: bumped when fields are appended. The host accepts drivers built for its minor
/// or an older one.
///
/// - 1.0: the first ABI.
/// - 1.1: [`HostApi::request_complete`] (the final flag without a response, for decoupled
///   models) and [`HostApi::request_cancelled`] (whether anyone still waits for a request).
/// - 1.2: [`DriverApi::memory_open`], [`DriverApi::memory_read`], [`DriverApi::memory_write`]
///   and [`DriverApi::memory_close`]: device memory another process shares with the server
///   (CUDA shared memory: a `cudaIpcMemHandle_t`), opened and copied by the driver that owns
///   the device.
/// - 1.3: [`HostApi::metric`]: a driver's own metrics on the server's Prometheus endpoint
///   (Triton's custom metrics).
pub const ABI_MINOR: u32 = 3;
/// The one symbol a driver exports (NUL-terminated for `dlsym`).
pub const DRIVER_ENTRY_SYMBOL: &[u8] = b"ferrite_driver_entry\0";
/// [`DRIVER_ENTRY_SYMBOL`] without its NUL, for messages.
pub const DRIVER_ENTRY_NAME: &str = "ferrite_driver_entry";

/// Flag for [`HostApi::response_send`] and [`HostApi::request_complete`]: this is the
/// request's last response.
pub const RESPONSE_FLAG_FINAL: u32 = 1;

/// Bits of [`DriverApi::instance_kinds`].
pub const INSTANCE_KIND_CPU: u32 = 1 << 0;
pub const INSTANCE_KIND_GPU: u32 = 1 << 1;
pub const INSTANCE_KIND_MODEL: u32 = 1 << 2;

/// Log levels for [`HostApi::log`].
pub const LOG_ERROR: u32 = 0;
pub const LOG_WARN: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_VERBOSE: u32 = 3;

/// A borrowed UTF-8 string: pointer and length, no terminating NUL.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Str {
    pub ptr: *const u8,
    pub len: usize,
}

/// cbindgen:ignore
impl Str {
    pub const EMPTY: Str = Str {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows `s`; the result is valid while `s` is.
    pub const fn new(s: &str) -> Str {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` bytes valid for `'a` (or be null with `len == 0`).
    /// Invalid UTF-8 is replaced rather than trusted.
    pub unsafe fn to_str_lossy<'a>(self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(unsafe { self.as_bytes() })
    }

    /// # Safety
    /// As for [`Str::to_str_lossy`].
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: a Str is only built over live bytes; Debug is for diagnostics.
        write!(f, "{:?}", unsafe { self.to_str_lossy() })
    }
}

/// Where a buffer lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// A [`MemoryKind`] value.
    pub kind: u32,
    /// GPU ordinal or NeuronCore index; 0 for CPU memory.
    pub device_id: i64,
}

/// cbindgen:ignore
impl Memory {
    pub const CPU: Memory = Memory {
        kind: MemoryKind::Cpu as u32,
        device_id: 0,
    };
}

/// A tensor as it crosses the boundary. BYTES elements are laid out as Triton does: each
/// element a 4-byte little-endian length followed by its bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Tensor {
    pub name: Str,
    /// A [`DataType`] value.
    pub datatype: u32,
    pub shape: *const i64,
    pub rank: usize,
    pub data: *const u8,
    pub byte_size: usize,
    pub memory: Memory,
}

/// Opaque host-owned error. Made by [`HostApi::error_new`].
#[repr(C)]
pub struct Error {
    _private: [u8; 0],
}

/// Opaque host-owned response under construction.
#[repr(C)]
pub struct Response {
    _private: [u8; 0],
}

/// Opaque host-owned handle of a request, from which responses are made.
#[repr(C)]
pub struct RequestHandle {
    _private: [u8; 0],
}

/// Opaque host-owned handle of a model being loaded.
#[repr(C)]
pub struct Model {
    _private: [u8; 0],
}

/// One inference request handed to [`DriverApi::execute`].
#[repr(C)]
#[derive(Debug)]
pub struct Request {
    pub size: usize,
    /// The client's request id ("" when none).
    pub id: Str,
    pub inputs: *const Tensor,
    pub input_count: usize,
    /// Names of the outputs the client asked for; none means every output of the model.
    pub requested_outputs: *const Str,
    pub requested_output_count: usize,
    /// The request's parameters as a JSON object ("" when there are none).
    pub parameters_json: Str,
    /// Handle for [`HostApi::response_new`].
    pub handle: *mut RequestHandle,
}

/// Timestamps a driver may fill in during [`DriverApi::execute`] (from [`HostApi::now_ns`]),
/// so the host can split compute time into input, infer and output like Triton. Zero means
/// "not reported": the host then counts the whole execution as infer time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecuteStats {
    pub size: usize,
    /// When input preparation ended and the model started running.
    pub infer_start_ns: u64,
    /// When the model finished and output preparation started.
    pub infer_end_ns: u64,
}

/// What the host tells a driver when it initialises it.
#[repr(C)]
#[derive(Debug)]
pub struct DriverInfo {
    pub size: usize,
    /// Path of the driver's shared library file.
    pub path: Str,
    /// The directory holding it (drivers find their own dependencies there).
    pub directory: Str,
    /// Settings for this driver (`--backend-config=<driver>,<key>=<value>`) as a JSON object of
    /// strings.
    pub config_json: Str,
}

/// What the host tells a driver when it loads one version of a model.
#[repr(C)]
#[derive(Debug)]
pub struct ModelInfo {
    pub size: usize,
    pub name: Str,
    pub version: i64,
    /// The model's directory in the repository.
    pub model_path: Str,
    /// The version's directory (`<model_path>/<version>`).
    pub version_path: Str,
    /// The model configuration as given (protobuf JSON, Triton's field names).
    pub config_json: Str,
    /// Non-zero when the driver should fill in what the configuration leaves out (inputs,
    /// outputs, max_batch_size) from the model file, through [`HostApi::model_set_config`].
    pub auto_complete: u32,
}

/// What the host tells a driver when it creates a model instance.
#[repr(C)]
#[derive(Debug)]
pub struct InstanceInfo {
    pub size: usize,
    /// `<group name>_<index>`, e.g. `simple_0_0`.
    pub name: Str,
    /// One of the `INSTANCE_KIND_*` bits.
    pub kind: u32,
    /// GPU ordinal (KIND_GPU) or -1.
    pub device_id: i32,
    /// The final, validated model configuration (protobuf JSON).
    pub config_json: Str,
}

/// The host's functions, handed to the driver's entry point. Valid for the process lifetime.
#[repr(C)]
pub struct HostApi {
    pub size: usize,
    pub abi_major: u32,
    pub abi_minor: u32,
    /// Writes a line to the server log, at one of the `LOG_*` levels.
    pub log: unsafe extern "C" fn(level: u32, message: Str),
    /// Makes an error to return or send. The host owns it.
    pub error_new: unsafe extern "C" fn(code: u32, message: Str) -> *mut Error,
    /// The code of an error the host returned.
    pub error_code: unsafe extern "C" fn(error: *const Error) -> u32,
    /// The message of an error the host returned, valid until it is deleted.
    pub error_message: unsafe extern "C" fn(error: *const Error) -> Str,
    /// Frees an error the host returned and the driver does not pass on.
    pub error_delete: unsafe extern "C" fn(error: *mut Error),
    /// During `model_load`: replaces the model's configuration (protobuf JSON), e.g. after
    /// auto-completing it from the model file.
    pub model_set_config: unsafe extern "C" fn(model: *mut Model, config_json: Str) -> *mut Error,
    /// Starts a response to a request.
    pub response_new: unsafe extern "C" fn(
        request: *mut RequestHandle,
        response: *mut *mut Response,
    ) -> *mut Error,
    /// Adds an output to a response and returns a buffer of `byte_size` bytes for the driver to
    /// fill before sending. `memory` is the preferred placement on entry and the actual one on
    /// return.
    pub response_output: unsafe extern "C" fn(
        response: *mut Response,
        name: Str,
        datatype: u32,
        shape: *const i64,
        rank: usize,
        byte_size: usize,
        memory: *mut Memory,
        buffer: *mut *mut u8,
    ) -> *mut Error,
    /// Sends a response, or an error in its place (`error` non-null: the response's outputs
    /// are dropped and the host takes ownership of the error). With [`RESPONSE_FLAG_FINAL`] it
    /// is the request's last. The response handle is invalid afterwards, even on error.
    pub response_send:
        unsafe extern "C" fn(response: *mut Response, flags: u32, error: *mut Error) -> *mut Error,
    /// Drops a response without sending it (its outputs are freed; the request still needs
    /// a final response).
    pub response_delete: unsafe extern "C" fn(response: *mut Response),
    /// The host's monotonic clock in nanoseconds, for [`ExecuteStats`].
    pub now_ns: unsafe extern "C" fn() -> u64,
    /// Since 1.1. Ends a request of a decoupled model without sending another response:
    /// `flags` must be [`RESPONSE_FLAG_FINAL`]. A decoupled model may answer a request with
    /// responses sent without the flag and then this, or with no response at all. Refused
    /// (an error is returned) for models that are not decoupled, whose one response is final.
    pub request_complete:
        unsafe extern "C" fn(request: *mut RequestHandle, flags: u32) -> *mut Error,
    /// Since 1.1. Non-zero once nobody waits for the request's responses any more (the client
    /// went away or cancelled it): a driver that takes long over one request (a decoupled
    /// stream, above all) checks it and ends the request early.
    pub request_cancelled: unsafe extern "C" fn(request: *mut RequestHandle) -> u32,
    /// Since 1.3. Records one of the driver's own metrics for the server's Prometheus endpoint
    /// (Triton's custom metrics): family `name` (`[a-zA-Z_:][a-zA-Z0-9_:]*`) with `help` text,
    /// of `kind` [`METRIC_COUNTER`] (`value`, at least 0, is added) or [`METRIC_GAUGE`]
    /// (`value` is set), for the label set `labels_json` (a JSON object of strings; empty for
    /// none). Returns an error for a bad name, label or value, or a family recorded before
    /// with another kind or help.
    pub metric: unsafe extern "C" fn(
        name: Str,
        help: Str,
        kind: u32,
        labels_json: Str,
        value: f64,
    ) -> *mut Error,
}

/// [`HostApi::metric`]: a value that only grows (added to).
pub const METRIC_COUNTER: u32 = 0;
/// [`HostApi::metric`]: a value that is set.
pub const METRIC_GAUGE: u32 = 1;

/// The size of the ABI 1.0 host table. A driver built for a later minor that wants to run on
/// older hosts too checks [`HostApi::size`] against the offset of each newer field before
/// calling it.
pub const HOST_API_SIZE_1_0: usize = std::mem::offset_of!(HostApi, request_complete);
/// The size of the ABI 1.2 host table (1.1 and 1.2 added nothing after `request_cancelled`).
pub const HOST_API_SIZE_1_2: usize = std::mem::offset_of!(HostApi, metric);

/// `driver_init`: makes the driver's global state.
pub type DriverInitFn =
    Option<unsafe extern "C" fn(info: *const DriverInfo, state: *mut *mut c_void) -> *mut Error>;
/// `driver_fini`, `model_unload`, `instance_destroy`: frees a state.
pub type FiniFn = Option<unsafe extern "C" fn(state: *mut c_void)>;
/// `model_load`: loads one version of a model.
pub type ModelLoadFn = Option<
    unsafe extern "C" fn(
        driver_state: *mut c_void,
        info: *const ModelInfo,
        model: *mut Model,
        state: *mut *mut c_void,
    ) -> *mut Error,
>;
/// `instance_create`: makes one instance of a loaded model.
pub type InstanceCreateFn = Option<
    unsafe extern "C" fn(
        model_state: *mut c_void,
        info: *const InstanceInfo,
        state: *mut *mut c_void,
    ) -> *mut Error,
>;
/// `execute`: runs a batch of requests on an instance. Called from the instance's own thread,
/// never concurrently for one instance. The driver sends a final response (or error) for every
/// request; an error returned here fails every request that got no final response.
pub type ExecuteFn = Option<
    unsafe extern "C" fn(
        instance_state: *mut c_void,
        requests: *const Request,
        request_count: usize,
        stats: *mut ExecuteStats,
    ) -> *mut Error,
>;

/// `memory_open` (1.2): opens device memory that another process shared with the server, for
/// `kind` (a [`MemoryKind`]) on device `device_id`: for [`MemoryKind::Gpu`], `handle` holds the
/// 64 bytes of a CUDA IPC memory handle (`cudaIpcMemHandle_t`) and `byte_size` is how much of
/// the allocation the client registered. On success `memory` is the driver's handle for the
/// other calls. UNSUPPORTED when the driver does not open memory of that kind.
pub type MemoryOpenFn = Option<
    unsafe extern "C" fn(
        driver_state: *mut c_void,
        kind: u32,
        device_id: i64,
        handle: *const u8,
        handle_len: usize,
        byte_size: u64,
        memory: *mut *mut c_void,
    ) -> *mut Error,
>;
/// `memory_read` (1.2): copies `len` bytes at `offset` of opened memory into host memory
/// `dst`; `memory_write`: copies `len` bytes from host memory `src` to `offset`. The host
/// checks `offset + len` against the registered size before calling. The copy is complete
/// when the call returns. Called from any thread.
pub type MemoryReadFn = Option<
    unsafe extern "C" fn(memory: *mut c_void, offset: u64, dst: *mut u8, len: usize) -> *mut Error,
>;
pub type MemoryWriteFn = Option<
    unsafe extern "C" fn(
        memory: *mut c_void,
        offset: u64,
        src: *const u8,
        len: usize,
    ) -> *mut Error,
>;

/// The driver's table, returned by its entry point. Valid for the process lifetime.
#[repr(C)]
pub struct DriverApi {
    pub size: usize,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub name: Str,
    pub version: Str,
    /// `backend` names in config.pbtxt that this driver serves (e.g. "onnxruntime").
    pub backends: *const Str,
    pub backend_count: usize,
    /// `platform` names in config.pbtxt that this driver serves (e.g. "onnxruntime_onnx").
    pub platforms: *const Str,
    pub platform_count: usize,
    /// The instance kinds it can run, as `INSTANCE_KIND_*` bits.
    pub instance_kinds: u32,
    /// Bit `1 << t` is set for each [`DataType`] value `t` it supports.
    pub datatypes: u64,
    pub driver_init: DriverInitFn,
    pub driver_fini: FiniFn,
    pub model_load: ModelLoadFn,
    pub model_unload: FiniFn,
    pub instance_create: InstanceCreateFn,
    pub instance_destroy: FiniFn,
    pub execute: ExecuteFn,
    /// 1.2: device memory shared by other processes (see [`MemoryOpenFn`]); all optional.
    pub memory_open: MemoryOpenFn,
    pub memory_read: MemoryReadFn,
    pub memory_write: MemoryWriteFn,
    /// Closes memory opened by `memory_open`, once no copy is running on it.
    pub memory_close: FiniFn,
}

/// The size of the ABI 1.0 driver table: a driver's `size` must be at least this; fields
/// appended in later minors are read only when its `size` covers them.
pub const DRIVER_API_MIN_SIZE: usize =
    std::mem::offset_of!(DriverApi, execute) + std::mem::size_of::<ExecuteFn>();
/// The size of the ABI 1.2 driver table, which has the memory functions.
pub const DRIVER_API_SIZE_1_2: usize =
    std::mem::offset_of!(DriverApi, memory_close) + std::mem::size_of::<FiniFn>();

/// The type of [`DRIVER_ENTRY_SYMBOL`].
pub type DriverEntryFn = unsafe extern "C" fn(host: *const HostApi) -> *const DriverApi;

// The tables are shared between threads; their pointers refer to data that lives for the whole
// process, so this is sound.
unsafe impl Sync for DriverApi {}
unsafe impl Send for DriverApi {}
unsafe impl Sync for HostApi {}
unsafe impl Send for HostApi {}
unsafe impl Sync for Str {}
unsafe impl Send for Str {}
