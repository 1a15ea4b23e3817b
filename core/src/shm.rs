//! The shared memory extension: regions a client registers (a POSIX shared memory object,
//! an offset and a size) that inputs are read from and outputs written to, so large tensors
//! do not travel through the socket. System shared memory is real on every build. CUDA shared
//! memory (a `cudaIpcMemHandle_t`, a device and a size) is opened by a driver that runs GPU
//! instances and opens shared device memory (ABI 1.2, the CUDA driver); inputs are copied
//! from it and outputs to it through that driver. With no such driver (no GPU) registering a
//! CUDA region is refused as by a Triton built without GPUs.
//!
//! As in Triton ≥ 2.69, clients may register, unregister and so use regions only when the
//! server allows it (`--allow-client-shm=true`, [`crate::ServerOptions::allow_client_shm`]);
//! otherwise those calls fail with [`CLIENT_SHM_DISABLED`]. Status calls always answer.
//! Messages and codes are those of Triton's shared_memory_manager.cc and http_server.cc.
//!
//! The mapping is the one place in core, beside the driver loader, that needs `unsafe`: the
//! memory is shared with another process, which may write to it at any time (as with Triton,
//! the client must not touch a region while a request that uses it is in flight, nor shrink
//! the object while it is registered).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::RwLock;

use crate::driver::{DeviceMemory, Driver};
use crate::{Error, ErrorCode, Result};

/// Triton's answer to a client's register/unregister when client shared memory is off.
pub const CLIENT_SHM_DISABLED: &str =
    "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable.";

/// Keys with this prefix (after leading slashes) are reserved, as in Triton (whose Python
/// backend names its own regions so).
pub const RESERVED_KEY_PREFIX: &str = "triton_python_backend_shm_region_";

/// A registered system shared memory region, as the status call reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemRegionStatus {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
}

/// A registered CUDA shared memory region, as the status call reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaRegionStatus {
    pub name: String,
    pub device_id: u64,
    pub byte_size: u64,
}

struct Region {
    status: SystemRegionStatus,
    map: Arc<MmapRaw>,
}

struct CudaRegion {
    status: CudaRegionStatus,
    memory: Arc<DeviceMemory>,
}

/// Where a request's tensor lives in a region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionRef {
    pub region: String,
    pub offset: u64,
    pub byte_size: u64,
}

/// A view of part of a mapping that keeps the mapping alive (for `Bytes::from_owner`).
struct MappedSlice {
    map: Arc<MmapRaw>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for MappedSlice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start + len` was checked against the mapping's length when the slice was
        // made, and the mapping lives as long as `self`. The bytes may be changed by the
        // client process concurrently; that is the extension's contract (see the module doc).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(self.start), self.len) }
    }
}

/// Where one output goes: part of a region, resolved (and its mapping or device memory held)
/// when the request is read, as Triton does, so unregistering the region meanwhile cannot
/// redirect the write.
#[derive(Clone)]
pub struct OutputRegion {
    region: String,
    target: Target,
    len: usize,
}

/// Where a span of a registered region starts, with the region's memory held.
#[derive(Clone)]
enum Target {
    Mapped {
        map: Arc<MmapRaw>,
        start: usize,
    },
    Device {
        memory: Arc<DeviceMemory>,
        offset: u64,
    },
}

impl std::fmt::Debug for OutputRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, at) = match &self.target {
            Target::Mapped { start, .. } => ("system", *start as u64),
            Target::Device { offset, .. } => ("cuda", *offset),
        };
        f.debug_struct("OutputRegion")
            .field("region", &self.region)
            .field("kind", &kind)
            .field("start", &at)
            .field("len", &self.len)
            .finish()
    }
}

impl OutputRegion {
    /// The region's name.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The bytes the request gave the output.
    pub fn byte_size(&self) -> u64 {
        self.len as u64
    }

    /// Writes output `name`'s data at the start of this span; it must fit (Triton's INTERNAL
    /// error otherwise).
    pub fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        if data.len() > self.len {
            return Err(Error::internal(format!(
                "shared memory size specified with the request for output '{name}' ({} bytes) should be at least {} bytes to hold the results",
                self.len,
                data.len()
            )));
        }
        match &self.target {
            Target::Mapped { map, start } => {
                // SAFETY: `start + data.len() <= start + len`, within the mapping (checked
                // when the span was made); the mapping is alive (we hold an Arc) and writable
                // (opened read-write). `copy` (memmove) because the data may itself come from
                // the region.
                unsafe { std::ptr::copy(data.as_ptr(), map.as_mut_ptr().add(*start), data.len()) };
                Ok(())
            }
            Target::Device { memory, offset } => memory.write(*offset, data).map_err(|e| {
                Error::internal(format!(
                    "failed to copy output '{name}' to CUDA shared memory region '{}': {}",
                    self.region,
                    e.message()
                ))
            }),
        }
    }
}

/// The server's registered regions.
pub struct SharedMemory {
    allow_client: bool,
    system: RwLock<BTreeMap<String, Region>>,
    cuda: RwLock<BTreeMap<String, CudaRegion>>,
    /// Drivers that open shared GPU memory (ABI 1.2), tried in order.
    gpu_drivers: Vec<Arc<Driver>>,
}

impl Default for SharedMemory {
    /// Client shared memory off, as Triton's default.
    fn default() -> Self {
        SharedMemory::new(false)
    }
}

/// Where POSIX shared memory objects live on Linux.
const SHM_DIR: &str = "/dev/shm";

/// The file behind a POSIX shared memory key, as glibc's `shm_open` finds it: leading
/// slashes dropped, no other slash allowed.
fn shm_path(name: &str, key: &str) -> Result<PathBuf> {
    let object = key.trim_start_matches('/');
    if object.is_empty() {
        return Err(Error::invalid_arg(format!(
            "cannot register shared memory region '{name}' - invalid shm key '{key}'"
        )));
    }
    if object.starts_with(RESERVED_KEY_PREFIX) {
        return Err(Error::invalid_arg(format!(
            "cannot register shared memory region '{name}' with key '{key}' as the key contains the reserved prefix '{RESERVED_KEY_PREFIX}'"
        )));
    }
    if object.contains('/') || object == "." || object == ".." || object.contains('\0') {
        return Err(Error::internal(format!(
            "Unable to open shared memory region: '{key}' (not a POSIX shared memory object name; expected '/name')"
        )));
    }
    Ok(PathBuf::from(SHM_DIR).join(object))
}

/// Opens a shared memory object read-write, refusing anything that is not a regular file
/// in /dev/shm itself (a symbolic link, as glibc's `O_NOFOLLOW`; a directory, a FIFO).
fn open_object(key: &str, path: &std::path::Path) -> Result<(std::fs::File, u64)> {
    let cannot_open = |why: String| {
        Error::internal(format!(
            "Unable to open shared memory region: '{key}' ({why})"
        ))
    };
    let link = std::fs::symlink_metadata(path).map_err(|e| cannot_open(e.to_string()))?;
    if !link.file_type().is_file() {
        return Err(cannot_open("not a POSIX shared memory object".into()));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| cannot_open(e.to_string()))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::internal(format!("Invalid shared memory region: '{key}' ({e})")))?;
    // The object opened must be the one looked at: not swapped for a link in between.
    if !meta.file_type().is_file() || meta.dev() != link.dev() || meta.ino() != link.ino() {
        return Err(cannot_open("not a POSIX shared memory object".into()));
    }
    Ok((file, meta.len()))
}

fn already_registered(name: &str) -> Error {
    Error::new(
        ErrorCode::AlreadyExists,
        format!("shared memory region '{name}' already in manager"),
    )
}

impl SharedMemory {
    /// `allow_client`: whether clients may register, unregister and use regions
    /// (`--allow-client-shm`).
    pub fn new(allow_client: bool) -> SharedMemory {
        SharedMemory {
            allow_client,
            system: RwLock::new(BTreeMap::new()),
            cuda: RwLock::new(BTreeMap::new()),
            gpu_drivers: Vec::new(),
        }
    }

    /// With the drivers that may open CUDA shared memory: those that run GPU instances and
    /// have the ABI 1.2 memory functions.
    pub fn with_drivers(mut self, drivers: &[Arc<Driver>]) -> SharedMemory {
        self.gpu_drivers = drivers
            .iter()
            .filter(|d| {
                d.instance_kinds & ferrite_driver_abi::INSTANCE_KIND_GPU != 0 && d.opens_memory()
            })
            .cloned()
            .collect();
        self
    }

    /// Whether CUDA shared memory can be registered here.
    pub fn supports_cuda(&self) -> bool {
        !self.gpu_drivers.is_empty()
    }

    fn registered(&self, name: &str) -> bool {
        self.system.read().contains_key(name) || self.cuda.read().contains_key(name)
    }

    /// Whether client shared memory is on.
    pub fn allows_client(&self) -> bool {
        self.allow_client
    }

    /// UNSUPPORTED with [`CLIENT_SHM_DISABLED`] unless client shared memory is on. Register
    /// and unregister check it themselves; a frontend calls it where Triton checks it before
    /// anything else (e.g. before refusing a register request that names no region).
    pub fn check_client_allowed(&self) -> Result<()> {
        if self.allow_client {
            Ok(())
        } else {
            Err(Error::unsupported(CLIENT_SHM_DISABLED))
        }
    }

    /// Registers a region: maps `byte_size` bytes of the object `key` from `offset`.
    pub fn register_system(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<()> {
        self.check_client_allowed()?;
        if name.is_empty() {
            return Err(Error::invalid_arg(
                "'region name' is necessary to register system shared memory region",
            ));
        }
        let path = shm_path(name, key)?;
        if self.registered(name) {
            return Err(already_registered(name));
        }
        let (file, object_size) = open_object(key, &path)?;
        let invalid = |why: String| {
            Error::invalid_arg(format!(
                "failed to register shared memory region '{name}': invalid args ({why})"
            ))
        };
        if offset
            .checked_add(byte_size)
            .is_none_or(|end| end > object_size)
        {
            return Err(invalid(format!(
                "offset {offset} + byte_size {byte_size} is outside the shared memory object '{key}' of {object_size} bytes"
            )));
        }
        if byte_size == 0 {
            return Err(invalid("byte_size must be greater than 0".into()));
        }
        let len = usize::try_from(byte_size)
            .map_err(|_| invalid(format!("byte_size {byte_size} is too large")))?;
        let map = MmapOptions::new()
            .offset(offset)
            .len(len)
            .map_raw(&file)
            .map_err(|e| {
                Error::invalid_arg(format!(
                    "failed to register shared memory region '{name}': unable to process address space: {e}"
                ))
                .with_source(e)
            })?;
        drop(file);
        let region = Region {
            status: SystemRegionStatus {
                name: name.to_string(),
                key: key.to_string(),
                offset,
                byte_size,
            },
            map: Arc::new(map),
        };
        // Locks in one order everywhere: system, then CUDA.
        let mut system = self.system.write();
        if system.contains_key(name) || self.cuda.read().contains_key(name) {
            return Err(already_registered(name));
        }
        system.insert(name.to_string(), region);
        Ok(())
    }

    /// Unregisters one region (`Some(name)`; unknown names are not an error, as in Triton) or
    /// every region (`None`). Requests already holding a region's data keep the mapping alive
    /// until they finish.
    pub fn unregister_system(&self, name: Option<&str>) -> Result<()> {
        self.check_client_allowed()?;
        let mut system = self.system.write();
        match name {
            Some(name) => {
                system.remove(name);
            }
            None => system.clear(),
        }
        Ok(())
    }

    /// Status of one region or of all. An unknown name is NOT_FOUND.
    pub fn system_status(&self, name: Option<&str>) -> Result<Vec<SystemRegionStatus>> {
        let system = self.system.read();
        match name {
            Some(name) => system
                .get(name)
                .map(|r| vec![r.status.clone()])
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "Unable to find system shared memory region: '{name}'"
                    ))
                }),
            None => Ok(system.values().map(|r| r.status.clone()).collect()),
        }
    }

    /// Triton's `GetMemoryInfo` checks: the region exists (system or CUDA) and `offset`,
    /// `offset + byte_size` lie inside it.
    fn span(&self, at: &RegionRef) -> Result<(Target, usize)> {
        let name = &at.region;
        // Locks in one order everywhere: system, then CUDA.
        // The start is only used once checked below: then it lies within the region.
        let (size, target) = {
            let system = self.system.read();
            match system.get(name) {
                Some(region) => (
                    region.status.byte_size,
                    Target::Mapped {
                        map: Arc::clone(&region.map),
                        start: at.offset as usize,
                    },
                ),
                None => match self.cuda.read().get(name) {
                    Some(region) => (
                        region.status.byte_size,
                        Target::Device {
                            memory: Arc::clone(&region.memory),
                            offset: at.offset,
                        },
                    ),
                    None => return Err(unknown_region(name)),
                },
            }
        };
        if at.offset >= size {
            return Err(Error::invalid_arg(format!(
                "Invalid offset for shared memory region: '{name}' (offset {} is not inside the region's {size} bytes)",
                at.offset
            )));
        }
        let Some(end) = at.offset.checked_add(at.byte_size) else {
            return Err(Error::invalid_arg(format!(
                "Integer overflow detected: byte_size ({}) + offset ({}) exceeds maximum value ({}) for region '{name}'",
                at.byte_size,
                at.offset,
                u64::MAX
            )));
        };
        if end > size {
            return Err(Error::invalid_arg(format!(
                "Invalid offset + byte size for shared memory region: '{name}' (offset {} + byte size {} exceeds the region's {size} bytes)",
                at.offset, at.byte_size
            )));
        }
        let len = usize::try_from(at.byte_size).map_err(|_| {
            Error::invalid_arg(format!(
                "byte size {} for shared memory region '{name}' is too large",
                at.byte_size
            ))
        })?;
        Ok((target, len))
    }

    /// An input's data: read in place from a system region (no copy; the bytes keep the
    /// mapping alive), copied to the host from a CUDA region.
    pub fn input(&self, at: &RegionRef) -> Result<Bytes> {
        match self.span(at)? {
            (Target::Mapped { map, start }, len) => {
                Ok(Bytes::from_owner(MappedSlice { map, start, len }))
            }
            (Target::Device { memory, offset }, len) => {
                let mut data = vec![0u8; len];
                memory.read(offset, &mut data).map_err(|e| {
                    Error::internal(format!(
                        "failed to copy from CUDA shared memory region '{}': {}",
                        at.region,
                        e.message()
                    ))
                })?;
                Ok(Bytes::from(data))
            }
        }
    }

    /// Where an output goes, checked and held now, written after inference.
    pub fn output(&self, at: &RegionRef) -> Result<OutputRegion> {
        let (target, len) = self.span(at)?;
        Ok(OutputRegion {
            region: at.region.clone(),
            target,
            len,
        })
    }

    /// Writes an output into a region. `data` must fit in `at.byte_size`.
    pub fn write_output(&self, at: &RegionRef, name: &str, data: &[u8]) -> Result<()> {
        self.output(at)?.write(name, data)
    }

    /// Status of one CUDA region or of all. Region names share one namespace with system
    /// regions, as in Triton.
    pub fn cuda_status(&self, name: Option<&str>) -> Result<Vec<CudaRegionStatus>> {
        let system = self.system.read();
        let cuda = self.cuda.read();
        match name {
            Some(name) => match cuda.get(name) {
                Some(region) => Ok(vec![region.status.clone()]),
                None if system.contains_key(name) => Err(Error::not_found(format!(
                    "The region named '{name}' is registered as system shared memory, not CUDA shared memory"
                ))),
                None => Err(Error::not_found(format!(
                    "Unable to find cuda shared memory region: '{name}'"
                ))),
            },
            None => Ok(cuda.values().map(|r| r.status.clone()).collect()),
        }
    }

    /// The checks Triton makes before it looks at a CUDA register request's body: allowed,
    /// named, and GPUs supported at all.
    pub fn check_cuda_register(&self, name: &str) -> Result<()> {
        self.check_client_allowed()?;
        if name.is_empty() {
            return Err(Error::invalid_arg(
                "'region name' is necessary to register cuda shared memory region",
            ));
        }
        if !self.supports_cuda() {
            // Triton's answer when it has no GPU support.
            return Err(Error::invalid_arg(format!(
                "failed to register CUDA shared memory region: '{name}', GPUs not supported"
            )));
        }
        Ok(())
    }

    /// Registers CUDA shared memory: `raw_handle` (a `cudaIpcMemHandle_t`) for memory on GPU
    /// `device_id`, `byte_size` bytes of it, opened by the first GPU driver that takes it.
    pub fn register_cuda(
        &self,
        name: &str,
        raw_handle: &[u8],
        device_id: i64,
        byte_size: u64,
    ) -> Result<()> {
        self.check_cuda_register(name)?;
        if self.registered(name) {
            return Err(already_registered(name));
        }
        if byte_size == 0 {
            return Err(Error::invalid_arg(format!(
                "failed to register CUDA shared memory region '{name}': byte_size must be greater than 0"
            )));
        }
        let mut refusals = Vec::new();
        let mut opened = None;
        for driver in &self.gpu_drivers {
            match driver.open_memory(
                ferrite_driver_abi::MemoryKind::Gpu,
                device_id,
                raw_handle,
                byte_size,
            ) {
                Ok(memory) => {
                    opened = Some(memory);
                    break;
                }
                Err(e) if e.code() == ErrorCode::Unsupported => {
                    refusals.push(e.message().to_string());
                }
                Err(e) => {
                    return Err(Error::invalid_arg(format!(
                        "failed to register CUDA shared memory region '{name}': {}",
                        e.message()
                    )));
                }
            }
        }
        let Some(memory) = opened else {
            return Err(Error::invalid_arg(format!(
                "failed to register CUDA shared memory region: '{name}', GPUs not supported ({})",
                refusals.join("; ")
            )));
        };
        let region = CudaRegion {
            status: CudaRegionStatus {
                name: name.to_string(),
                device_id: device_id.max(0) as u64,
                byte_size,
            },
            memory: Arc::new(memory),
        };
        // Locks in one order everywhere: system, then CUDA.
        let system = self.system.read();
        let mut cuda = self.cuda.write();
        if cuda.contains_key(name) || system.contains_key(name) {
            return Err(already_registered(name));
        }
        cuda.insert(name.to_string(), region);
        Ok(())
    }

    /// Unregisters one CUDA region (`Some(name)`; unknown names are not an error, as in
    /// Triton) or every CUDA region (`None`). Requests holding a region keep its memory open
    /// until they finish.
    pub fn unregister_cuda(&self, name: Option<&str>) -> Result<()> {
        self.check_client_allowed()?;
        let mut cuda = self.cuda.write();
        match name {
            Some(name) => {
                cuda.remove(name);
            }
            None => cuda.clear(),
        }
        Ok(())
    }
}

fn unknown_region(name: &str) -> Error {
    Error::not_found(format!("Unable to find shared memory region: '{name}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Object(PathBuf);
    impl Drop for Object {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn object(size: usize) -> (String, Object) {
        let key = format!("/ferrite_test_{}_{}", std::process::id(), rand_suffix());
        let path = shm_path("t", &key).unwrap();
        std::fs::write(&path, vec![0u8; size]).unwrap();
        (key, Object(path))
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn at(region: &str, offset: u64, byte_size: u64) -> RegionRef {
        RegionRef {
            region: region.into(),
            offset,
            byte_size,
        }
    }

    #[test]
    fn register_read_write_unregister() {
        let (key, _obj) = object(8192);
        let shm = SharedMemory::new(true);
        shm.register_system("r", &key, 4096, 64).unwrap();
        assert_eq!(
            shm.system_status(None).unwrap(),
            vec![SystemRegionStatus {
                name: "r".into(),
                key: key.clone(),
                offset: 4096,
                byte_size: 64
            }]
        );
        let at = at("r", 8, 4);
        shm.write_output(&at, "OUT", &[1, 2, 3, 4]).unwrap();
        let input = shm.input(&at).unwrap();
        assert_eq!(&input[..], &[1, 2, 3, 4]);
        // the bytes the server wrote are in the object at offset + 8
        let raw = std::fs::read(shm_path("t", &key).unwrap()).unwrap();
        assert_eq!(&raw[4096 + 8..4096 + 12], &[1, 2, 3, 4]);
        // an output span holds its mapping: unregistering does not redirect or break it
        let out = shm.output(&at).unwrap();
        assert_eq!((out.region(), out.byte_size()), ("r", 4));
        // a duplicate name is refused
        assert_eq!(
            shm.register_system("r", &key, 0, 8).unwrap_err().code(),
            ErrorCode::AlreadyExists
        );
        shm.unregister_system(Some("r")).unwrap();
        assert!(shm.system_status(None).unwrap().is_empty());
        out.write("OUT", &[9, 9]).unwrap();
        // data already taken keeps its mapping alive
        assert_eq!(&input[..], &[9, 9, 3, 4]);
        // unknown names are not an error; neither is unregistering everything
        shm.unregister_system(Some("r")).unwrap();
        shm.register_system("a", &key, 0, 8).unwrap();
        shm.register_system("b", &key, 8, 8).unwrap();
        assert_eq!(shm.system_status(None).unwrap().len(), 2);
        shm.unregister_system(None).unwrap();
        assert!(shm.system_status(None).unwrap().is_empty());
    }

    #[test]
    fn data_from_the_region_may_be_written_back_over_itself() {
        let (key, _obj) = object(16);
        let shm = SharedMemory::new(true);
        shm.register_system("r", &key, 0, 16).unwrap();
        shm.write_output(&at("r", 0, 8), "O", &[1, 2, 3, 4, 5, 6, 7, 8])
            .unwrap();
        let data = shm.input(&at("r", 0, 8)).unwrap();
        shm.write_output(&at("r", 4, 8), "O", &data).unwrap();
        let raw = std::fs::read(shm_path("t", &key).unwrap()).unwrap();
        assert_eq!(&raw[..12], &[1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn client_shared_memory_is_off_by_default() {
        let (key, _obj) = object(16);
        let shm = SharedMemory::default();
        assert!(!shm.allows_client());
        for e in [
            shm.register_system("r", &key, 0, 16).unwrap_err(),
            shm.unregister_system(Some("r")).unwrap_err(),
            shm.unregister_system(None).unwrap_err(),
            shm.register_cuda("g", &[0; 64], 0, 64).unwrap_err(),
            shm.unregister_cuda(None).unwrap_err(),
            shm.check_client_allowed().unwrap_err(),
        ] {
            assert_eq!(
                (e.code(), e.message()),
                (ErrorCode::Unsupported, CLIENT_SHM_DISABLED)
            );
        }
        // status still answers
        assert!(shm.system_status(None).unwrap().is_empty());
        assert!(shm.cuda_status(None).unwrap().is_empty());
        assert_eq!(
            shm.input(&at("r", 0, 1)).unwrap_err().message(),
            "Unable to find shared memory region: 'r'"
        );
    }

    #[test]
    fn bad_keys_are_refused_by_name() {
        let (key, _obj) = object(100);
        let shm = SharedMemory::new(true);
        let e = shm
            .register_system("r", "/ferrite_no_such_object", 0, 10)
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(
            e.message()
                .starts_with("Unable to open shared memory region: '/ferrite_no_such_object' ("),
            "{}",
            e.message()
        );
        for bad in ["../etc/passwd", "/a/b", "/..", "x\0y"] {
            let e = shm.register_system("r", bad, 0, 10).unwrap_err();
            assert!(
                e.message()
                    .contains("not a POSIX shared memory object name"),
                "{bad}: {}",
                e.message()
            );
        }
        let e = shm.register_system("r", "//", 0, 10).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ErrorCode::InvalidArg,
                "cannot register shared memory region 'r' - invalid shm key '//'"
            )
        );
        let e = shm
            .register_system("r", "/triton_python_backend_shm_region_1", 0, 10)
            .unwrap_err();
        assert!(e.message().contains("reserved prefix"), "{}", e.message());
        let e = shm.register_system("", &key, 0, 10).unwrap_err();
        assert_eq!(
            e.message(),
            "'region name' is necessary to register system shared memory region"
        );
        // leading slashes are optional, as with shm_open
        shm.register_system("r", key.trim_start_matches('/'), 0, 10)
            .unwrap();
    }

    #[test]
    fn things_that_are_not_shared_memory_objects() {
        let shm = SharedMemory::new(true);
        let n = rand_suffix();
        let pid = std::process::id();
        // a directory
        let dir = PathBuf::from(SHM_DIR).join(format!("ferrite_test_dir_{pid}_{n}"));
        std::fs::create_dir(&dir).unwrap();
        let e = shm
            .register_system(
                "r",
                &format!("/{}", dir.file_name().unwrap().to_str().unwrap()),
                0,
                1,
            )
            .unwrap_err();
        std::fs::remove_dir(&dir).unwrap();
        assert!(
            e.message().contains("not a POSIX shared memory object"),
            "{}",
            e.message()
        );
        // a symbolic link to a file elsewhere
        let target = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(target.path(), [0u8; 64]).unwrap();
        let link = PathBuf::from(SHM_DIR).join(format!("ferrite_test_link_{pid}_{n}"));
        std::os::unix::fs::symlink(target.path(), &link).unwrap();
        let _link = Object(link.clone());
        let e = shm
            .register_system(
                "r",
                &format!("/{}", link.file_name().unwrap().to_str().unwrap()),
                0,
                8,
            )
            .unwrap_err();
        assert!(
            e.message().contains("not a POSIX shared memory object"),
            "{}",
            e.message()
        );
        assert!(shm.system_status(None).unwrap().is_empty());
    }

    #[test]
    fn bad_regions_are_refused_by_name() {
        let (key, _obj) = object(100);
        let shm = SharedMemory::new(true);
        let e = shm.register_system("r", &key, 90, 20).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArg);
        assert!(
            e.message()
                .starts_with("failed to register shared memory region 'r': invalid args ("),
            "{}",
            e.message()
        );
        assert!(e.message().contains("outside"), "{}", e.message());
        let e = shm.register_system("r", &key, u64::MAX, 2).unwrap_err();
        assert!(e.message().contains("outside"), "{}", e.message());
        let e = shm.register_system("r", &key, 0, 0).unwrap_err();
        assert!(e.message().contains("invalid args"), "{}", e.message());

        shm.register_system("r", &key, 0, 100).unwrap();
        let e = shm.input(&at("r", 96, 8)).unwrap_err();
        assert!(
            e.message()
                .starts_with("Invalid offset + byte size for shared memory region: 'r' ("),
            "{}",
            e.message()
        );
        let e = shm.input(&at("r", 100, 0)).unwrap_err();
        assert!(
            e.message()
                .starts_with("Invalid offset for shared memory region: 'r' ("),
            "{}",
            e.message()
        );
        let e = shm.input(&at("r", 1, u64::MAX)).unwrap_err();
        assert!(
            e.message().starts_with("Integer overflow detected"),
            "{}",
            e.message()
        );
        assert_eq!(shm.input(&at("r", 99, 0)).unwrap().len(), 0);
        let e = shm.input(&at("nope", 0, 1)).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ErrorCode::NotFound,
                "Unable to find shared memory region: 'nope'"
            )
        );
        let e = shm
            .write_output(&at("r", 0, 2), "OUT", &[0; 4])
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ErrorCode::Internal,
                "shared memory size specified with the request for output 'OUT' (2 bytes) should be at least 4 bytes to hold the results"
            )
        );
        let e = shm.system_status(Some("nope")).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ErrorCode::NotFound,
                "Unable to find system shared memory region: 'nope'"
            )
        );
    }

    #[test]
    fn cuda_without_cuda() {
        let (key, _obj) = object(8);
        let shm = SharedMemory::new(true);
        assert!(shm.cuda_status(None).unwrap().is_empty());
        let e = shm.register_cuda("g", &[0; 64], 0, 64).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArg);
        assert_eq!(
            e.message(),
            "failed to register CUDA shared memory region: 'g', GPUs not supported"
        );
        assert_eq!(
            shm.register_cuda("", &[0; 64], 0, 64)
                .unwrap_err()
                .message(),
            "'region name' is necessary to register cuda shared memory region"
        );
        shm.unregister_cuda(None).unwrap();
        shm.unregister_cuda(Some("g")).unwrap();
        assert_eq!(
            shm.cuda_status(Some("g")).unwrap_err().message(),
            "Unable to find cuda shared memory region: 'g'"
        );
        shm.register_system("s", &key, 0, 8).unwrap();
        let e = shm.cuda_status(Some("s")).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                ErrorCode::NotFound,
                "The region named 's' is registered as system shared memory, not CUDA shared memory"
            )
        );
        // unregistering CUDA regions leaves system regions alone
        shm.unregister_cuda(None).unwrap();
        shm.unregister_cuda(Some("s")).unwrap();
        assert_eq!(shm.system_status(None).unwrap().len(), 1);
    }
}
