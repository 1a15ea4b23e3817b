//! The driver host: finds driver libraries under the backend directory, checks their ABI
//! version, initialises them, and wraps their entry points in safe calls. Drivers stay loaded
//! for the life of the process; models and instances come and go.

mod host_api;
pub mod memory;

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrite_driver_abi as abi;
use host_api::{HOST_API, ModelLoadSlot, error_from_abi};
pub use host_api::{RawOutput, RequestSlot, ResponseSink};

use crate::{Error, Result};

/// File names the host loads as drivers: `libferrite_driver_<name>.so`.
pub const DRIVER_FILE_PREFIX: &str = "libferrite_driver_";

/// A loaded, initialised driver.
pub struct Driver {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
    pub backends: Vec<String>,
    pub platforms: Vec<String>,
    pub instance_kinds: u32,
    api: &'static abi::DriverApi,
    state: *mut c_void,
}

// SAFETY: the driver's table and state are process-lifetime and the ABI requires drivers to be
// callable from any thread (one instance is only ever used by one thread at a time).
unsafe impl Send for Driver {}
unsafe impl Sync for Driver {}

/// A driver library that was found but could not be used.
#[derive(Debug)]
pub struct FailedDriver {
    pub path: PathBuf,
    /// What it serves, when its table could be read.
    pub backends: Vec<String>,
    pub platforms: Vec<String>,
    /// The instance kinds it would have run (`abi::INSTANCE_KIND_*`), when its table could be
    /// read.
    pub instance_kinds: u32,
    /// The driver loaded and its init refused with UNAVAILABLE: what it needs (a device, its
    /// runtime library) is not on this machine, rather than the driver being broken.
    pub hardware_absent: bool,
    pub error: Error,
}

/// Every driver found under the backend directory.
#[derive(Default)]
pub struct DriverRegistry {
    drivers: Vec<Arc<Driver>>,
    failed: Vec<FailedDriver>,
}

fn strings(ptr: *const abi::Str, len: usize) -> Vec<String> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the driver's table points at `len` static strings.
    unsafe { std::slice::from_raw_parts(ptr, len) }
        .iter()
        .map(|s| unsafe { s.to_str_lossy() }.into_owned())
        .collect()
}

/// `libferrite_driver_*.so` files directly in `dir`, then in its subdirectories; a file name
/// already found is not loaded twice (cargo's `deps/` copies, for instance).
fn driver_files(dir: &Path) -> Result<Vec<PathBuf>> {
    fn is_driver(p: &Path) -> bool {
        p.is_file()
            && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(DRIVER_FILE_PREFIX) && n.ends_with(std::env::consts::DLL_SUFFIX)
            })
    }
    fn sorted(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
    if !dir.is_dir() {
        return Err(Error::invalid_arg(format!(
            "backend directory {} does not exist or is not a directory",
            dir.display()
        )));
    }
    let entries = sorted(dir);
    let mut files: Vec<PathBuf> = entries.iter().filter(|p| is_driver(p)).cloned().collect();
    for sub in entries.iter().filter(|p| p.is_dir()) {
        for f in sorted(sub).into_iter().filter(|p| is_driver(p)) {
            if !files.iter().any(|known| known.file_name() == f.file_name()) {
                files.push(f);
            }
        }
    }
    Ok(files)
}

impl DriverRegistry {
    /// Loads every driver under `dir`. `settings` are the `--backend-config` values, keyed by
    /// driver or backend name. A driver that fails is remembered with its reason, so models
    /// that need it can say why they are unavailable.
    pub fn discover(
        dir: &Path,
        settings: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Self> {
        let mut registry = DriverRegistry::default();
        for path in driver_files(dir)? {
            match load_once(&path, settings) {
                Ok(driver) => {
                    if registry.drivers.iter().any(|d| d.name == driver.name) {
                        tracing::warn!(
                            "driver '{}' at {} ignored: a driver of that name is already loaded",
                            driver.name,
                            path.display()
                        );
                        continue;
                    }
                    tracing::info!(
                        "loaded driver '{}' {} from {} (backends: {}; platforms: {})",
                        driver.name,
                        driver.version,
                        path.display(),
                        driver.backends.join(", "),
                        driver.platforms.join(", ")
                    );
                    registry.drivers.push(driver);
                }
                Err(failed) => {
                    // A driver whose hardware or runtime is not on this machine (a GPU driver
                    // on a CPU host) said UNAVAILABLE: a warning, not an error.
                    if failed.hardware_absent {
                        tracing::warn!("{}", failed.error.chain());
                    } else {
                        tracing::error!("{}", failed.error.chain());
                    }
                    registry.failed.push(*failed);
                }
            }
        }
        Ok(registry)
    }

    pub fn drivers(&self) -> &[Arc<Driver>] {
        &self.drivers
    }

    pub fn failed(&self) -> &[FailedDriver] {
        &self.failed
    }

    /// The driver that serves a model's `backend` (or `platform`) for its instance kinds
    /// (`abi::INSTANCE_KIND_*` bits, all the kinds of the model's groups): of the drivers that
    /// run every one of them, the one that runs fewest other kinds (a CPU-only model goes to
    /// the CPU driver even where the GPU driver could run CPU instances too).
    pub fn find(&self, backend: &str, platform: &str, kinds: u32) -> Result<Arc<Driver>> {
        let serves = |backends: &[String], platforms: &[String]| {
            (!backend.is_empty() && backends.iter().any(|b| b == backend))
                || (!platform.is_empty() && platforms.iter().any(|p| p == platform))
        };
        let candidates: Vec<&Arc<Driver>> = self
            .drivers
            .iter()
            .filter(|d| serves(&d.backends, &d.platforms))
            .collect();
        if let Some(d) = candidates
            .iter()
            .filter(|d| d.instance_kinds & kinds == kinds)
            .min_by_key(|d| (d.instance_kinds & !kinds).count_ones())
        {
            return Ok(Arc::clone(d));
        }
        let what = if backend.is_empty() {
            format!("platform '{platform}'")
        } else {
            format!("backend '{backend}'")
        };
        // A driver that would have run these kinds, and failed to load, says why.
        let failed_for = |f: &&FailedDriver| {
            serves(&f.backends, &f.platforms)
                && (f.instance_kinds == 0 || f.instance_kinds & kinds == kinds)
        };
        if let Some(failed) = self.failed.iter().find(failed_for) {
            return Err(Error::unavailable(format!(
                "the driver for {what} failed to load: {}",
                failed.error.chain()
            )));
        }
        if !candidates.is_empty() {
            let names: Vec<&str> = candidates.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::unsupported(format!(
                "no driver runs {what} on {} instances (drivers for it: {})",
                kind_names(kinds),
                names.join(", ")
            )));
        }
        let mut message = format!("no driver serves {what}");
        if !self.failed.is_empty() {
            let reasons: Vec<String> = self.failed.iter().map(|f| f.error.chain()).collect();
            message.push_str(&format!(
                "; drivers that failed to load: {}",
                reasons.join("; ")
            ));
        }
        Err(Error::unavailable(message))
    }

    /// Why no driver runs instances of `kind` here: the reasons of the drivers for that kind
    /// that failed to load (empty when there were none).
    pub fn kind_unavailable_reasons(&self, kind: u32) -> Vec<String> {
        self.failed
            .iter()
            .filter(|f| f.instance_kinds & kind != 0)
            .map(|f| f.error.chain())
            .collect()
    }
}

/// The kinds of a set of `abi::INSTANCE_KIND_*` bits, as config.pbtxt spells them.
fn kind_names(kinds: u32) -> String {
    let names: Vec<&str> = [
        (abi::INSTANCE_KIND_CPU, "KIND_CPU"),
        (abi::INSTANCE_KIND_GPU, "KIND_GPU"),
        (abi::INSTANCE_KIND_MODEL, "KIND_MODEL"),
    ]
    .iter()
    .filter(|(bit, _)| kinds & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    names.join(" and ")
}

/// Checks a driver's table before anything else in it is read: ABI major equal to the host's,
/// minor not newer, and at least the 1.0 table's size.
fn check_table(shown: &str, api: &abi::DriverApi) -> Result<()> {
    if api.abi_major != abi::ABI_MAJOR || api.abi_minor > abi::ABI_MINOR {
        return Err(Error::unavailable(format!(
            "driver {shown} (symbol '{}'): built for driver ABI {}.{}, but this host speaks ABI {}.{} (it loads drivers of major {} and minor 0 to {})",
            abi::DRIVER_ENTRY_NAME,
            api.abi_major,
            api.abi_minor,
            abi::ABI_MAJOR,
            abi::ABI_MINOR,
            abi::ABI_MAJOR,
            abi::ABI_MINOR
        )));
    }
    if api.size < abi::DRIVER_API_MIN_SIZE {
        return Err(Error::unavailable(format!(
            "driver {shown} (symbol '{}'): its table is {} bytes, smaller than ABI {}.0's {} bytes",
            abi::DRIVER_ENTRY_NAME,
            api.size,
            abi::ABI_MAJOR,
            abi::DRIVER_API_MIN_SIZE
        )));
    }
    if api.execute.is_none() {
        return Err(Error::unavailable(format!(
            "driver {shown} (symbol '{}') has no execute function",
            abi::DRIVER_ENTRY_NAME
        )));
    }
    Ok(())
}

/// Drivers initialised so far in this process, by canonical path: a library is opened and
/// initialised once per process, however many servers (tests) discover it.
static LOADED: std::sync::Mutex<Vec<(PathBuf, Arc<Driver>)>> = std::sync::Mutex::new(Vec::new());

fn load_once(
    path: &Path,
    settings: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Arc<Driver>, Box<FailedDriver>> {
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, d)) = loaded.iter().find(|(p, _)| *p == key) {
        return Ok(Arc::clone(d));
    }
    let driver = Arc::new(load(path, settings)?);
    loaded.push((key, Arc::clone(&driver)));
    Ok(driver)
}

/// Opens one driver library, checks its table and initialises it.
fn load(
    path: &Path,
    settings: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Driver, Box<FailedDriver>> {
    let fail = |error: Error| {
        Box::new(FailedDriver {
            path: path.to_path_buf(),
            backends: Vec::new(),
            platforms: Vec::new(),
            instance_kinds: 0,
            hardware_absent: false,
            error,
        })
    };
    let shown = path.display();
    // SAFETY: loading a library runs its initialisers; the backend directory is trusted
    // configuration, as in Triton.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
        fail(Error::unavailable(format!("failed to open driver library {shown}")).with_source(e))
    })?;
    // SAFETY: the symbol's type is fixed by the ABI.
    let entry: abi::DriverEntryFn = unsafe {
        *library
            .get::<abi::DriverEntryFn>(abi::DRIVER_ENTRY_SYMBOL)
            .map_err(|e| {
                fail(
                    Error::unavailable(format!(
                        "driver library {shown} does not export the entry symbol '{}'",
                        abi::DRIVER_ENTRY_NAME
                    ))
                    .with_source(e),
                )
            })?
    };
    // Drivers are never unloaded (unloading a library is a hazard): keep it for the process.
    std::mem::forget(library);
    // SAFETY: calling the entry point with the host's static table, per the ABI.
    let api = unsafe { entry(&HOST_API) };
    if api.is_null() {
        return Err(fail(Error::unavailable(format!(
            "driver {shown}: '{}' returned no table; it refuses this host's ABI {}.{}",
            abi::DRIVER_ENTRY_NAME,
            abi::ABI_MAJOR,
            abi::ABI_MINOR
        ))));
    }
    // SAFETY: a non-null table lives for the process. Read the fixed prefix (size and versions)
    // before anything else.
    let api: &'static abi::DriverApi = unsafe { &*api };
    check_table(&shown.to_string(), api).map_err(fail)?;
    // SAFETY: static strings of the table.
    let name = unsafe { api.name.to_str_lossy() }.into_owned();
    let version = unsafe { api.version.to_str_lossy() }.into_owned();
    let backends = strings(api.backends, api.backend_count);
    let platforms = strings(api.platforms, api.platform_count);
    let fail = |error: Error| {
        Box::new(FailedDriver {
            path: path.to_path_buf(),
            backends: backends.clone(),
            platforms: platforms.clone(),
            instance_kinds: api.instance_kinds,
            hardware_absent: false,
            error,
        })
    };

    // Settings for the driver's own name and every backend it serves.
    let mut merged = serde_json::Map::new();
    for key in std::iter::once(&name).chain(backends.iter()) {
        for (k, v) in settings.get(key).into_iter().flatten() {
            merged.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    let config_json = serde_json::Value::Object(merged).to_string();
    let path_text = path.to_string_lossy().into_owned();
    let dir_text = path
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let info = abi::DriverInfo {
        size: std::mem::size_of::<abi::DriverInfo>(),
        path: abi::Str::new(&path_text),
        directory: abi::Str::new(&dir_text),
        config_json: abi::Str::new(&config_json),
    };
    let mut state: *mut c_void = std::ptr::null_mut();
    if let Some(init) = api.driver_init {
        // SAFETY: per the ABI; info and the out-pointer outlive the call.
        unsafe { error_from_abi(init(&info, &mut state)) }.map_err(|e| {
            let mut failed = fail(Error::unavailable(format!(
                "driver '{name}' ({shown}) failed to initialise: {}",
                e.message()
            )));
            failed.hardware_absent = e.code() == abi::ErrorCode::Unavailable;
            failed
        })?;
    }
    Ok(Driver {
        name,
        version,
        path: path.to_path_buf(),
        backends,
        platforms,
        instance_kinds: api.instance_kinds,
        api,
        state,
    })
}

/// What a driver is told about a model version it loads.
pub struct ModelLoadRequest<'a> {
    pub name: &'a str,
    pub version: i64,
    pub model_path: &'a Path,
    pub version_path: &'a Path,
    pub config_json: String,
    pub auto_complete: bool,
}

/// A model version loaded by a driver; unloaded when dropped.
pub struct DriverModel {
    driver: Arc<Driver>,
    state: *mut c_void,
}

// SAFETY: see Driver.
unsafe impl Send for DriverModel {}
unsafe impl Sync for DriverModel {}

impl Drop for DriverModel {
    fn drop(&mut self) {
        if let Some(unload) = self.driver.api.model_unload {
            // SAFETY: the state came from model_load and every instance of it is gone (each
            // instance holds an Arc to its DriverModel).
            unsafe { unload(self.state) }
        }
    }
}

/// One instance made by a driver; destroyed when dropped.
pub struct DriverInstance {
    model: Arc<DriverModel>,
    state: *mut c_void,
}

// SAFETY: an instance is used by one thread at a time (it is moved into its thread).
unsafe impl Send for DriverInstance {}

impl Drop for DriverInstance {
    fn drop(&mut self) {
        if let Some(destroy) = self.model.driver.api.instance_destroy {
            // SAFETY: the state came from instance_create and is freed once.
            unsafe { destroy(self.state) }
        }
    }
}

/// Owned copies of the strings an instance's info points at.
pub struct InstanceRequest<'a> {
    pub name: &'a str,
    pub kind: u32,
    pub device_id: i32,
    pub config_json: &'a str,
}

/// Device memory another process shared with the server (CUDA shared memory), opened by the
/// driver that owns the device (ABI 1.2); closed when dropped.
pub struct DeviceMemory {
    driver: Arc<Driver>,
    memory: *mut c_void,
}

// SAFETY: the ABI requires memory_read/memory_write to be callable from any thread, and
// memory_close is called once, when the last holder drops it.
unsafe impl Send for DeviceMemory {}
unsafe impl Sync for DeviceMemory {}

impl DeviceMemory {
    /// Copies `dst.len()` bytes at `offset` into `dst`. The caller has checked the span
    /// against the registered size.
    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<()> {
        let read = self.driver.api.memory_read.ok_or_else(|| {
            Error::internal(format!("driver '{}' has no memory_read", self.driver.name))
        })?;
        // SAFETY: `memory` is open (closed only in Drop); `dst` is writable for its length.
        unsafe { error_from_abi(read(self.memory, offset, dst.as_mut_ptr(), dst.len())) }
    }

    /// Copies `src` to `offset`. The caller has checked the span against the registered size.
    pub fn write(&self, offset: u64, src: &[u8]) -> Result<()> {
        let write = self.driver.api.memory_write.ok_or_else(|| {
            Error::internal(format!("driver '{}' has no memory_write", self.driver.name))
        })?;
        // SAFETY: as for read; `src` is readable for its length.
        unsafe { error_from_abi(write(self.memory, offset, src.as_ptr(), src.len())) }
    }

    /// The driver that opened it.
    pub fn driver(&self) -> &str {
        &self.driver.name
    }
}

impl Drop for DeviceMemory {
    fn drop(&mut self) {
        if let Some(close) = self.driver.api.memory_close {
            // SAFETY: opened by this driver's memory_open, closed once.
            unsafe { close(self.memory) };
        }
    }
}

impl Driver {
    /// Whether the driver's table has the ABI 1.2 memory functions.
    pub fn opens_memory(&self) -> bool {
        self.api.size >= abi::DRIVER_API_SIZE_1_2
            && self.api.memory_open.is_some()
            && self.api.memory_read.is_some()
            && self.api.memory_write.is_some()
    }

    /// Opens device memory a client shared (`kind` a [`abi::MemoryKind`]); UNSUPPORTED when
    /// this driver does not open that kind.
    pub fn open_memory(
        self: &Arc<Self>,
        kind: abi::MemoryKind,
        device_id: i64,
        handle: &[u8],
        byte_size: u64,
    ) -> Result<DeviceMemory> {
        let open = match self.api.memory_open {
            Some(open) if self.opens_memory() => open,
            _ => {
                return Err(Error::unsupported(format!(
                    "driver '{}' does not open shared device memory",
                    self.name
                )));
            }
        };
        let mut memory: *mut c_void = std::ptr::null_mut();
        // SAFETY: per the ABI; the handle bytes and the out-pointer outlive the call.
        unsafe {
            error_from_abi(open(
                self.state,
                kind as u32,
                device_id,
                handle.as_ptr(),
                handle.len(),
                byte_size,
                &mut memory,
            ))
        }?;
        if memory.is_null() {
            return Err(Error::internal(format!(
                "driver '{}' opened shared device memory but returned no handle",
                self.name
            )));
        }
        Ok(DeviceMemory {
            driver: Arc::clone(self),
            memory,
        })
    }

    /// Loads a model version. Returns the driver's model and, when the driver replaced the
    /// configuration (auto-complete), the new configuration JSON.
    pub fn load_model(
        self: &Arc<Self>,
        req: &ModelLoadRequest<'_>,
    ) -> Result<(DriverModel, Option<String>)> {
        let model_path = req.model_path.to_string_lossy();
        let version_path = req.version_path.to_string_lossy();
        let info = abi::ModelInfo {
            size: std::mem::size_of::<abi::ModelInfo>(),
            name: abi::Str::new(req.name),
            version: req.version,
            model_path: abi::Str::new(&model_path),
            version_path: abi::Str::new(&version_path),
            config_json: abi::Str::new(&req.config_json),
            auto_complete: req.auto_complete as u32,
        };
        let slot = ModelLoadSlot::default();
        let mut state: *mut c_void = std::ptr::null_mut();
        if let Some(load) = self.api.model_load {
            // SAFETY: per the ABI; everything passed outlives the call.
            unsafe { error_from_abi(load(self.state, &info, slot.handle(), &mut state)) }?;
        }
        let config = slot.config_json.into_inner();
        Ok((
            DriverModel {
                driver: Arc::clone(self),
                state,
            },
            config,
        ))
    }
}

impl DriverModel {
    pub fn driver(&self) -> &Arc<Driver> {
        &self.driver
    }

    /// Creates an instance of this model.
    pub fn create_instance(self: &Arc<Self>, req: &InstanceRequest<'_>) -> Result<DriverInstance> {
        let info = abi::InstanceInfo {
            size: std::mem::size_of::<abi::InstanceInfo>(),
            name: abi::Str::new(req.name),
            kind: req.kind,
            device_id: req.device_id,
            config_json: abi::Str::new(req.config_json),
        };
        let mut state: *mut c_void = std::ptr::null_mut();
        if let Some(create) = self.driver.api.instance_create {
            // SAFETY: per the ABI; the model state is live while `self` is.
            unsafe { error_from_abi(create(self.state, &info, &mut state)) }?;
        }
        Ok(DriverInstance {
            model: Arc::clone(self),
            state,
        })
    }
}

/// A request as the instance thread hands it to a driver: owned strings and tensor
/// descriptors that the `abi::Request` points into.
pub struct ExecRequest<'a> {
    pub id: &'a str,
    pub inputs: Vec<abi::Tensor>,
    pub requested_outputs: Vec<abi::Str>,
    pub parameters_json: String,
    pub slot: &'a RequestSlot,
}

impl DriverInstance {
    /// Runs a batch. Every request without a final response afterwards gets one: the driver's
    /// error, or INTERNAL when the driver forgot it.
    pub fn execute(
        &mut self,
        requests: &[ExecRequest<'_>],
        stats: &mut abi::ExecuteStats,
    ) -> Result<()> {
        let raw: Vec<abi::Request> = requests
            .iter()
            .map(|r| abi::Request {
                size: std::mem::size_of::<abi::Request>(),
                id: abi::Str::new(r.id),
                inputs: r.inputs.as_ptr(),
                input_count: r.inputs.len(),
                requested_outputs: r.requested_outputs.as_ptr(),
                requested_output_count: r.requested_outputs.len(),
                parameters_json: abi::Str::new(&r.parameters_json),
                handle: r.slot.handle(),
            })
            .collect();
        let execute = self
            .model
            .driver
            .api
            .execute
            .expect("drivers without execute are refused at load");
        stats.size = std::mem::size_of::<abi::ExecuteStats>();
        // SAFETY: per the ABI: the instance is used by this thread only, and every pointer in
        // `raw` refers to data owned by `requests`, which outlives the call.
        let result = unsafe { error_from_abi(execute(self.state, raw.as_ptr(), raw.len(), stats)) };
        let driver = &self.model.driver.name;
        for r in requests {
            if !r.slot.finished() {
                let error = match &result {
                    Err(e) => Error::new(e.code(), e.message()),
                    Ok(()) => Error::internal(format!(
                        "driver '{driver}' returned without sending a response"
                    )),
                };
                r.slot.finish_with(error);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn execute(
        _: *mut c_void,
        _: *const abi::Request,
        _: usize,
        _: *mut abi::ExecuteStats,
    ) -> *mut abi::Error {
        std::ptr::null_mut()
    }

    fn table(major: u32, minor: u32) -> abi::DriverApi {
        abi::DriverApi {
            size: std::mem::size_of::<abi::DriverApi>(),
            abi_major: major,
            abi_minor: minor,
            name: abi::Str::new("t"),
            version: abi::Str::new("0"),
            backends: std::ptr::null(),
            backend_count: 0,
            platforms: std::ptr::null(),
            platform_count: 0,
            instance_kinds: abi::INSTANCE_KIND_CPU,
            datatypes: 0,
            driver_init: None,
            driver_fini: None,
            model_load: None,
            model_unload: None,
            instance_create: None,
            instance_destroy: None,
            execute: Some(execute),
            memory_open: None,
            memory_read: None,
            memory_write: None,
            memory_close: None,
        }
    }

    #[test]
    fn version_handshake() {
        assert!(
            check_table(
                "/d/libferrite_driver_t.so",
                &table(abi::ABI_MAJOR, abi::ABI_MINOR)
            )
            .is_ok()
        );
        for (major, minor) in [
            (abi::ABI_MAJOR + 1, 0),
            (abi::ABI_MAJOR, abi::ABI_MINOR + 1),
            (0, 0),
        ] {
            let e = check_table("/d/libferrite_driver_t.so", &table(major, minor)).unwrap_err();
            let m = e.message();
            assert_eq!(e.code(), crate::ErrorCode::Unavailable);
            assert!(m.contains("/d/libferrite_driver_t.so"), "{m}");
            assert!(m.contains(abi::DRIVER_ENTRY_NAME), "{m}");
            assert!(m.contains(&format!("ABI {major}.{minor}")), "{m}");
            assert!(
                m.contains(&format!("ABI {}.{}", abi::ABI_MAJOR, abi::ABI_MINOR)),
                "{m}"
            );
        }
        let mut small = table(abi::ABI_MAJOR, 0);
        small.size = 16;
        assert!(
            check_table("x", &small)
                .unwrap_err()
                .message()
                .contains("16 bytes")
        );
        let mut no_execute = table(abi::ABI_MAJOR, 0);
        no_execute.execute = None;
        assert!(
            check_table("x", &no_execute)
                .unwrap_err()
                .message()
                .contains("no execute")
        );
    }

    #[test]
    fn unloadable_files_are_reported_with_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("libferrite_driver_junk.so"),
            b"not an ELF file",
        )
        .unwrap();
        // A real shared library without the entry symbol.
        let libm = [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
            "/lib64/libm.so.6",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file());
        let sub = dir.path().join("m");
        std::fs::create_dir(&sub).unwrap();
        if let Some(libm) = libm {
            std::fs::copy(libm, sub.join("libferrite_driver_m.so")).unwrap();
        }
        std::fs::write(dir.path().join("not_a_driver.so"), b"ignored").unwrap();

        let registry = DriverRegistry::discover(dir.path(), &BTreeMap::new()).unwrap();
        assert!(registry.drivers().is_empty());
        let junk = &registry.failed()[0];
        assert!(junk.path.ends_with("libferrite_driver_junk.so"));
        let chain = junk.error.chain();
        assert!(chain.contains("failed to open driver library"), "{chain}");
        // The cause from the dynamic loader is kept, not just "dlopen failed".
        assert!(
            chain.contains("invalid ELF header") || chain.contains("file too short"),
            "{chain}"
        );
        if libm.is_some() {
            let m = &registry.failed()[1];
            let chain = m.error.chain();
            assert!(
                chain.contains("does not export the entry symbol 'ferrite_driver_entry'"),
                "{chain}"
            );
        }
        assert_eq!(registry.failed().len(), 1 + usize::from(libm.is_some()));

        let e = registry
            .find("onnxruntime", "", abi::INSTANCE_KIND_CPU)
            .err()
            .unwrap();
        assert!(
            e.message()
                .contains("no driver serves backend 'onnxruntime'"),
            "{}",
            e.message()
        );
        assert!(e.message().contains("failed to load"), "{}", e.message());

        let missing = DriverRegistry::discover(&dir.path().join("nope"), &BTreeMap::new())
            .err()
            .unwrap();
        assert!(missing.message().contains("does not exist"));
    }
}
