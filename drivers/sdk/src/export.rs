//! The C entry point and trampolines generated for a [`Driver`]: each one converts the raw
//! arguments into safe views, calls the driver inside `catch_unwind`, and turns errors and
//! panics into host-owned ABI errors.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use ferrite_driver_abi as abi;

use crate::{
    Batch, DataType, Driver, DriverInfo, Error, InstanceInfo, MemoryHandle, ModelLoad, Result,
    SharedDeviceMemory, host,
};

/// How a driver describes itself to the host (see [`export_driver!`](crate::export_driver)).
pub struct Descriptor {
    pub name: &'static str,
    pub version: &'static str,
    /// `backend` names it serves.
    pub backends: &'static [&'static str],
    /// `platform` names it serves.
    pub platforms: &'static [&'static str],
    /// `abi::INSTANCE_KIND_*` bits.
    pub instance_kinds: u32,
    pub datatypes: &'static [DataType],
}

/// Exports a [`Driver`] as a Ferrite driver library:
/// `export_driver!(MyDriver, Descriptor { name: "mine", ... });`
#[macro_export]
macro_rules! export_driver {
    ($driver:ty, $descriptor:expr) => {
        /// The driver's entry point, called by the Ferrite host.
        ///
        /// # Safety
        /// `host` must point to a host table that lives for the rest of the process.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn ferrite_driver_entry(
            host: *const $crate::abi::HostApi,
        ) -> *const $crate::abi::DriverApi {
            static TABLE: ::std::sync::OnceLock<&'static $crate::abi::DriverApi> =
                ::std::sync::OnceLock::new();
            static DESCRIPTOR: $crate::Descriptor = $descriptor;
            // SAFETY: forwarded from the caller's contract.
            unsafe { $crate::__private::entry::<$driver>(host, &DESCRIPTOR, &TABLE) }
        }
    };
}

/// Builds (once) and returns the driver's table.
///
/// # Safety
/// `host` must be null or point to a host table that lives for the rest of the process.
pub unsafe fn entry<D: Driver>(
    host: *const abi::HostApi,
    descriptor: &'static Descriptor,
    table: &'static std::sync::OnceLock<&'static abi::DriverApi>,
) -> *const abi::DriverApi {
    if host.is_null() {
        return std::ptr::null();
    }
    // SAFETY: non-null and valid for the process, per the contract.
    let host: &'static abi::HostApi = unsafe { &*host };
    // A host of another major cannot be spoken to at all; one whose table is smaller than
    // ours (an older minor) lacks functions we call.
    if host.abi_major != abi::ABI_MAJOR || host.size < std::mem::size_of::<abi::HostApi>() {
        return std::ptr::null();
    }
    host::set(host);
    *table.get_or_init(|| Box::leak(Box::new(build_table::<D>(descriptor))))
}

fn strs(names: &'static [&'static str]) -> (*const abi::Str, usize) {
    let v: Vec<abi::Str> = names.iter().map(|s| abi::Str::new(s)).collect();
    let leaked: &'static [abi::Str] = Box::leak(v.into_boxed_slice());
    (leaked.as_ptr(), leaked.len())
}

fn build_table<D: Driver>(d: &'static Descriptor) -> abi::DriverApi {
    let (backends, backend_count) = strs(d.backends);
    let (platforms, platform_count) = strs(d.platforms);
    abi::DriverApi {
        size: std::mem::size_of::<abi::DriverApi>(),
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        name: abi::Str::new(d.name),
        version: abi::Str::new(d.version),
        backends,
        backend_count,
        platforms,
        platform_count,
        instance_kinds: d.instance_kinds,
        datatypes: d
            .datatypes
            .iter()
            .fold(0u64, |bits, t| bits | 1 << (*t as u32)),
        driver_init: Some(driver_init::<D>),
        driver_fini: Some(drop_box::<D>),
        model_load: Some(model_load::<D>),
        model_unload: Some(drop_box::<ModelState<D>>),
        instance_create: Some(instance_create::<D>),
        instance_destroy: Some(drop_box::<InstanceState<D>>),
        execute: Some(execute::<D>),
        memory_open: Some(memory_open::<D>),
        memory_read: Some(memory_read),
        memory_write: Some(memory_write),
        memory_close: Some(drop_box::<Box<dyn SharedDeviceMemory>>),
    }
}

struct ModelState<D: Driver> {
    driver: *const D,
    model: Arc<D::Model>,
}

struct InstanceState<D: Driver> {
    driver: *const D,
    model: Arc<D::Model>,
    instance: D::Instance,
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with no message".to_string()
    }
}

/// Runs `f`, turning an error or a panic into a host-owned ABI error.
fn guarded(what: &str, f: impl FnOnce() -> Result<()>) -> *mut abi::Error {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => std::ptr::null_mut(),
        Ok(Err(e)) => host::to_abi(&e),
        Err(payload) => host::to_abi(&Error::internal(format!(
            "the driver panicked in {what}: {}",
            panic_message(payload)
        ))),
    }
}

unsafe extern "C" fn driver_init<D: Driver>(
    info: *const abi::DriverInfo,
    state: *mut *mut c_void,
) -> *mut abi::Error {
    guarded("driver_init", || {
        // SAFETY: the host passes a valid info and out-pointer for the duration of the call.
        let info = DriverInfo::from_abi(unsafe { &*info })?;
        let driver = D::init(&info)?;
        unsafe { *state = Box::into_raw(Box::new(driver)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn drop_box<T>(state: *mut c_void) {
    if !state.is_null() {
        // A panic in a destructor must not unwind into the host.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: `state` came from Box::into_raw of a T and is freed once by the host.
            drop(unsafe { Box::from_raw(state.cast::<T>()) })
        }));
    }
}

unsafe extern "C" fn model_load<D: Driver>(
    driver_state: *mut c_void,
    info: *const abi::ModelInfo,
    handle: *mut abi::Model,
    state: *mut *mut c_void,
) -> *mut abi::Error {
    guarded("model_load", || {
        // SAFETY: driver_state is the Box<D> from driver_init, alive until driver_fini, which the
        // host calls only after every model is unloaded; info/state are valid for the call.
        let driver: *const D = driver_state.cast();
        let mut load = ModelLoad::from_abi(unsafe { &*info }, handle)?;
        let model = unsafe { &*driver }.load_model(&mut load)?;
        let boxed = Box::new(ModelState {
            driver,
            model: Arc::new(model),
        });
        unsafe { *state = Box::into_raw(boxed).cast() };
        Ok(())
    })
}

unsafe extern "C" fn instance_create<D: Driver>(
    model_state: *mut c_void,
    info: *const abi::InstanceInfo,
    state: *mut *mut c_void,
) -> *mut abi::Error {
    guarded("instance_create", || {
        // SAFETY: model_state is a live ModelState<D> (instances are destroyed before their
        // model is unloaded); info/state are valid for the call.
        let model = unsafe { &*model_state.cast::<ModelState<D>>() };
        let info = InstanceInfo::from_abi(unsafe { &*info })?;
        let instance = unsafe { &*model.driver }.create_instance(&model.model, &info)?;
        let boxed = Box::new(InstanceState {
            driver: model.driver,
            model: Arc::clone(&model.model),
            instance,
        });
        unsafe { *state = Box::into_raw(boxed).cast() };
        Ok(())
    })
}

unsafe extern "C" fn execute<D: Driver>(
    instance_state: *mut c_void,
    requests: *const abi::Request,
    request_count: usize,
    stats: *mut abi::ExecuteStats,
) -> *mut abi::Error {
    guarded("execute", || {
        // SAFETY: the host calls execute for one instance from one thread at a time, with
        // `request_count` requests and a stats struct valid for the call.
        let state = unsafe { &mut *instance_state.cast::<InstanceState<D>>() };
        let requests = if request_count == 0 {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(requests, request_count) }
        };
        let stats = unsafe { &mut *stats };
        let mut batch = Batch::new(requests, stats);
        let driver = unsafe { &*state.driver };
        driver.execute(&state.model, &mut state.instance, &mut batch)
    })
}

// The raw driver pointer is only dereferenced while the driver lives (see above) and D is
// Sync, so the states may move between threads.
unsafe impl<D: Driver> Send for ModelState<D> {}
unsafe impl<D: Driver> Send for InstanceState<D> {}

unsafe extern "C" fn memory_open<D: Driver>(
    driver_state: *mut c_void,
    kind: u32,
    device_id: i64,
    handle: *const u8,
    handle_len: usize,
    byte_size: u64,
    memory: *mut *mut c_void,
) -> *mut abi::Error {
    guarded("memory_open", || {
        let Some(kind) = abi::MemoryKind::from_raw(kind) else {
            return Err(Error::invalid_arg(format!("unknown memory kind {kind}")));
        };
        let handle = if handle.is_null() || handle_len == 0 {
            &[][..]
        } else {
            // SAFETY: the host passes `handle_len` readable bytes for the duration of the call.
            unsafe { std::slice::from_raw_parts(handle, handle_len) }
        };
        // SAFETY: driver_state is the Box<D> from driver_init, alive for the process.
        let driver = unsafe { &*driver_state.cast::<D>() };
        let opened = driver.open_memory(&MemoryHandle {
            kind,
            device_id,
            handle,
            byte_size,
        })?;
        // SAFETY: the out-pointer is valid for the call; the host frees it with memory_close.
        unsafe { *memory = Box::into_raw(Box::new(opened)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn memory_read(
    memory: *mut c_void,
    offset: u64,
    dst: *mut u8,
    len: usize,
) -> *mut abi::Error {
    guarded("memory_read", || {
        // SAFETY: `memory` came from memory_open and is not closed while copies run; `dst`
        // holds `len` writable bytes for the call.
        let memory = unsafe { &*memory.cast::<Box<dyn SharedDeviceMemory>>() };
        let dst = if len == 0 {
            &mut [][..]
        } else {
            unsafe { std::slice::from_raw_parts_mut(dst, len) }
        };
        memory.read(offset, dst)
    })
}

unsafe extern "C" fn memory_write(
    memory: *mut c_void,
    offset: u64,
    src: *const u8,
    len: usize,
) -> *mut abi::Error {
    guarded("memory_write", || {
        // SAFETY: as for memory_read; `src` holds `len` readable bytes for the call.
        let memory = unsafe { &*memory.cast::<Box<dyn SharedDeviceMemory>>() };
        let src = if len == 0 {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(src, len) }
        };
        memory.write(offset, src)
    })
}
