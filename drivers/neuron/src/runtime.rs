//! Safe handles over the Neuron runtime (`ferrite-neuron-sys`): the opened and initialised
//! runtime, a NEFF loaded on one core, device tensors and tensor sets. Every handle keeps the
//! runtime alive and releases what it holds when dropped. Status codes stay integers and
//! errors name the call, the code and (for the codes known here) its meaning.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrite_driver_sdk::{Error, ErrorCode, Result};
use ferrite_neuron_sys as sys;

/// What a status code means, for the codes the documented API lists.
fn status_name(code: i32) -> &'static str {
    match code as u32 {
        sys::NRT_FAILURE => "non-specific failure",
        sys::NRT_INVALID => "invalid input: bad NEFF, or a tensor name or size that does not match",
        sys::NRT_INVALID_HANDLE => "invalid handle",
        sys::NRT_RESOURCE => "out of resources",
        sys::NRT_TIMEOUT => "timed out",
        sys::NRT_HW_ERROR => "hardware error",
        sys::NRT_QUEUE_FULL => "execution queue full",
        sys::NRT_LOAD_NOT_ENOUGH_NC => "not enough NeuronCores for the model",
        sys::NRT_UNSUPPORTED_NEFF_VERSION => "NEFF version not supported by this runtime",
        sys::NRT_FAIL_HOST_MEM_ALLOC => "host memory allocation failed",
        sys::NRT_UNINITIALIZED => "runtime not initialised",
        sys::NRT_CLOSED => "runtime closed",
        sys::NRT_EXEC_BAD_INPUT => "bad input",
        sys::NRT_EXEC_COMPLETED_WITH_NUM_ERR => "completed with numerical errors (NaN/Inf)",
        sys::NRT_EXEC_COMPLETED_WITH_ERR => "completed with errors",
        sys::NRT_EXEC_NC_BUSY => "NeuronCore busy",
        _ => "status not known to Ferrite",
    }
}

/// `Ok` for NRT_SUCCESS, else an error naming `what`.
fn check(status: sys::NRT_STATUS, what: impl FnOnce() -> String) -> Result<()> {
    if status == sys::NRT_SUCCESS as i32 {
        return Ok(());
    }
    let code = match status as u32 {
        sys::NRT_TIMEOUT | sys::NRT_QUEUE_FULL | sys::NRT_EXEC_NC_BUSY | sys::NRT_RESOURCE => {
            ErrorCode::Unavailable
        }
        _ => ErrorCode::Internal,
    };
    Err(Error::new(
        code,
        format!(
            "{} failed: Neuron runtime status {status} ({})",
            what(),
            status_name(status)
        ),
    ))
}

/// The opened, initialised runtime. `nrt_init` reserves every visible NeuronCore for this
/// process; dropping the last handle calls `nrt_close`.
pub struct Runtime {
    api: sys::NeuronRuntime,
    pub path: PathBuf,
    pub version: String,
    pub total_cores: u32,
    pub visible_cores: u32,
}

// SAFETY: the Neuron runtime's API is thread-safe; the struct holds only the library and
// function pointers.
unsafe impl Send for Runtime {}
unsafe impl Sync for Runtime {}

impl Runtime {
    /// Opens the library (`explicit`, else the loader's search, else /opt/aws/neuron/lib) and
    /// initialises it. UNAVAILABLE when the library is not here or will not initialise.
    pub fn open(explicit: Option<&Path>) -> Result<Arc<Runtime>> {
        // SAFETY: the file is the Neuron runtime (or a library exporting its functions).
        let (api, path) =
            unsafe { sys::open(explicit) }.map_err(|e| Error::unavailable(e.to_string()))?;
        let mut v: sys::nrt_version_t = unsafe { std::mem::zeroed() };
        // SAFETY: `v` is a valid nrt_version_t and its size is passed.
        let status = unsafe { (api.nrt_get_version)(&mut v, std::mem::size_of_val(&v)) };
        let version = if status == sys::NRT_SUCCESS as i32 {
            let detail = sys::c_text(&v.rt_detail);
            let mut s = format!("{}.{}.{}", v.rt_major, v.rt_minor, v.rt_patch);
            if v.rt_maintenance != 0 {
                s.push_str(&format!(".{}", v.rt_maintenance));
            }
            if !detail.is_empty() {
                s.push_str(&format!(" ({detail})"));
            }
            s
        } else {
            format!("of unknown version (nrt_get_version said {status})")
        };
        let empty = CString::default();
        // SAFETY: valid C strings; NO_FW is the framework value for a direct user.
        let status = unsafe {
            (api.nrt_init)(
                sys::NRT_FRAMEWORK_TYPE_NO_FW as i32,
                empty.as_ptr(),
                empty.as_ptr(),
            )
        };
        check(status, || {
            format!("nrt_init (Neuron runtime {version} at {})", path.display())
        })
        .map_err(|e| Error::unavailable(e.message))?;
        let mut runtime = Runtime {
            api,
            path,
            version,
            total_cores: 0,
            visible_cores: 0,
        };
        // SAFETY: out-pointers to u32s.
        let status = unsafe { (runtime.api.nrt_get_total_nc_count)(&mut runtime.total_cores) };
        check(status, || "nrt_get_total_nc_count".into())?;
        let status = unsafe { (runtime.api.nrt_get_visible_nc_count)(&mut runtime.visible_cores) };
        check(status, || "nrt_get_visible_nc_count".into())?;
        Ok(Arc::new(runtime))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: every model and tensor holds an Arc of the runtime, so none is left.
        unsafe { (self.api.nrt_close)() }
    }
}

/// One input or output of a loaded NEFF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub input: bool,
    /// Bytes (for the NEFF's compiled batch size). The runtime's data type is never read:
    /// its numbering changed between runtime versions.
    pub size: usize,
}

/// A NEFF loaded on one visible core.
pub struct LoadedNeff {
    rt: Arc<Runtime>,
    handle: *mut sys::nrt_model_t,
    pub core: u32,
}

// SAFETY: the runtime's handles are plain pointers it lets any thread use; the driver runs
// each loaded NEFF from one thread at a time (its core's).
unsafe impl Send for LoadedNeff {}
unsafe impl Sync for LoadedNeff {}

impl LoadedNeff {
    /// `nrt_load(neff, size, core, -1)`: the portable way to load on one core (current
    /// runtimes want -1 for the core count).
    pub fn load(rt: &Arc<Runtime>, neff: &[u8], core: u32) -> Result<LoadedNeff> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: `neff` is valid for its length; `handle` is an out-pointer.
        let status = unsafe {
            (rt.api.nrt_load)(
                neff.as_ptr().cast(),
                neff.len(),
                core as i32,
                -1,
                &mut handle,
            )
        };
        check(status, || format!("nrt_load on NeuronCore {core}"))?;
        Ok(LoadedNeff {
            rt: Arc::clone(rt),
            handle,
            core,
        })
    }

    /// The NEFF's inputs and outputs, in the runtime's order.
    pub fn tensors(&self) -> Result<Vec<TensorInfo>> {
        let mut info = std::ptr::null_mut();
        // SAFETY: a live model handle; `info` is an out-pointer.
        let status = unsafe { (self.rt.api.nrt_get_model_tensor_info)(self.handle, &mut info) };
        check(status, || "nrt_get_model_tensor_info".into())?;
        if info.is_null() {
            return Err(Error::internal(
                "nrt_get_model_tensor_info returned no information",
            ));
        }
        // SAFETY: the runtime returned an array of `tensor_count` entries, freed below.
        let list = unsafe {
            let count = (*info).tensor_count as usize;
            let first = std::ptr::addr_of!((*info).tensor_array).cast::<sys::nrt_tensor_info_t>();
            std::slice::from_raw_parts(first, count)
                .iter()
                .map(|t| TensorInfo {
                    name: sys::c_text(&t.name),
                    input: t.usage as u32 == sys::NRT_TENSOR_USAGE_INPUT,
                    size: t.size,
                })
                .collect()
        };
        // SAFETY: `info` came from nrt_get_model_tensor_info.
        unsafe { (self.rt.api.nrt_free_model_tensor_info)(info) };
        Ok(list)
    }

    /// Runs the NEFF once on its core (synchronously).
    pub fn execute(&self, inputs: &TensorSet, outputs: &mut TensorSet) -> Result<()> {
        // SAFETY: live handles; the sets' tensors belong to this core.
        let status =
            unsafe { (self.rt.api.nrt_execute)(self.handle, inputs.handle, outputs.handle) };
        check(status, || {
            format!("nrt_execute on NeuronCore {}", self.core)
        })
    }
}

impl Drop for LoadedNeff {
    fn drop(&mut self) {
        // SAFETY: loaded by nrt_load, unloaded once.
        unsafe { (self.rt.api.nrt_unload)(self.handle) };
    }
}

/// Memory of one tensor on one core's device.
pub struct DeviceTensor {
    rt: Arc<Runtime>,
    handle: *mut sys::nrt_tensor_t,
    pub size: usize,
}

// SAFETY: tensors are used by one thread at a time (the core's), and may move between them.
unsafe impl Send for DeviceTensor {}

impl DeviceTensor {
    pub fn allocate(rt: &Arc<Runtime>, core: u32, size: usize, name: &str) -> Result<DeviceTensor> {
        let c_name = CString::new(name)
            .map_err(|_| Error::invalid_arg(format!("tensor name {name:?} contains NUL")))?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: valid C string; `handle` is an out-pointer.
        let status = unsafe {
            (rt.api.nrt_tensor_allocate)(
                sys::NRT_TENSOR_PLACEMENT_DEVICE as i32,
                core as i32,
                size,
                c_name.as_ptr(),
                &mut handle,
            )
        };
        check(status, || {
            format!("nrt_tensor_allocate of {size} bytes for '{name}' on NeuronCore {core}")
        })?;
        Ok(DeviceTensor {
            rt: Arc::clone(rt),
            handle,
            size,
        })
    }

    /// Copies `data` to `offset` of the tensor.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        // SAFETY: a live tensor; the runtime checks the range against its size.
        let status = unsafe {
            (self.rt.api.nrt_tensor_write)(self.handle, data.as_ptr().cast(), offset, data.len())
        };
        check(status, || {
            format!("nrt_tensor_write of {} bytes at {offset}", data.len())
        })
    }

    /// Copies `out.len()` bytes at `offset` of the tensor into `out`.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        // SAFETY: as above.
        let status = unsafe {
            (self.rt.api.nrt_tensor_read)(self.handle, out.as_mut_ptr().cast(), offset, out.len())
        };
        check(status, || {
            format!("nrt_tensor_read of {} bytes at {offset}", out.len())
        })
    }
}

impl Drop for DeviceTensor {
    fn drop(&mut self) {
        // SAFETY: allocated by nrt_tensor_allocate; the runtime sets the pointer to NULL.
        unsafe { (self.rt.api.nrt_tensor_free)(&mut self.handle) };
    }
}

/// A named set of tensors: a NEFF's inputs or outputs for one execution. It refers to its
/// tensors, so whoever holds it keeps them alive at least as long (see `CoreSlot`).
pub struct TensorSet {
    rt: Arc<Runtime>,
    handle: *mut sys::nrt_tensor_set_t,
}

// SAFETY: as DeviceTensor.
unsafe impl Send for TensorSet {}

impl TensorSet {
    pub fn new(rt: &Arc<Runtime>) -> Result<TensorSet> {
        let mut handle = std::ptr::null_mut();
        // SAFETY: out-pointer.
        let status = unsafe { (rt.api.nrt_allocate_tensor_set)(&mut handle) };
        check(status, || "nrt_allocate_tensor_set".into())?;
        Ok(TensorSet {
            rt: Arc::clone(rt),
            handle,
        })
    }

    /// Adds `tensor` under `name`. The set must not outlive the tensor.
    pub fn add(&mut self, name: &str, tensor: &DeviceTensor) -> Result<()> {
        let c_name = CString::new(name)
            .map_err(|_| Error::invalid_arg(format!("tensor name {name:?} contains NUL")))?;
        // SAFETY: live handles; the runtime copies the name.
        let status = unsafe {
            (self.rt.api.nrt_add_tensor_to_tensor_set)(self.handle, c_name.as_ptr(), tensor.handle)
        };
        check(status, || format!("nrt_add_tensor_to_tensor_set '{name}'"))
    }
}

impl Drop for TensorSet {
    fn drop(&mut self) {
        // SAFETY: allocated by nrt_allocate_tensor_set; destroying it leaves the tensors.
        unsafe { (self.rt.api.nrt_destroy_tensor_set)(&mut self.handle) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_name_the_call_and_the_code() {
        check(0, || unreachable!()).unwrap();
        let e = check(1004, || "nrt_execute on NeuronCore 2".into()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
        assert_eq!(
            e.message,
            "nrt_execute on NeuronCore 2 failed: Neuron runtime status 1004 (completed with errors)"
        );
        // Codes a newer runtime adds stay numbers.
        let e = check(4242, || "nrt_load".into()).unwrap_err();
        assert!(
            e.message
                .contains("status 4242 (status not known to Ferrite)"),
            "{e}"
        );
        assert_eq!(
            check(5, || "x".into()).unwrap_err().code,
            ErrorCode::Unavailable
        );
    }
}
