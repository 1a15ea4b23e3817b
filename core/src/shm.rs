//! The shared memory extension: regions a client registers (a POSIX shared memory object,
//! an offset and a size) that inputs are read from and outputs written to, so large tensors
//! do not travel through the socket. System shared memory is real on every build; CUDA shared
//! memory answers as a build without CUDA does until the CUDA driver provides it.
//!
//! The mapping is the one place in core, beside the driver loader, that needs `unsafe`: the
//! memory is shared with another process, which may write to it at any time (as with Triton,
//! the client must not touch a region while a request that uses it is in flight).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::RwLock;

use crate::{Error, Result};

/// A registered system shared memory region, as the status call reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemRegionStatus {
    pub name: String,
    pub key: String,
    pub offset: u64,
    pub byte_size: u64,
}

struct Region {
    status: SystemRegionStatus,
    map: Arc<MmapRaw>,
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

/// The server's registered regions.
#[derive(Default)]
pub struct SharedMemory {
    system: RwLock<BTreeMap<String, Region>>,
}

/// Where POSIX shared memory objects live on Linux.
const SHM_DIR: &str = "/dev/shm";

fn shm_path(key: &str) -> Result<PathBuf> {
    let name = key.strip_prefix('/').unwrap_or(key);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::invalid_arg(format!(
            "shared memory key '{key}' is not a POSIX shared memory object name (expected '/name')"
        )));
    }
    Ok(PathBuf::from(SHM_DIR).join(name))
}

impl SharedMemory {
    /// Registers a region: maps `byte_size` bytes of the object `key` from `offset`.
    pub fn register_system(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid_arg(
                "shared memory region name must not be empty",
            ));
        }
        if self.system.read().contains_key(name) {
            return Err(Error::new(
                crate::ErrorCode::AlreadyExists,
                format!("shared memory region '{name}' already in manager"),
            ));
        }
        let path = shm_path(key)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| {
                Error::invalid_arg(format!(
                    "Unable to open shared memory region: '{key}' ({}: {e})",
                    path.display()
                ))
                .with_source(e)
            })?;
        let object_size = file
            .metadata()
            .map_err(|e| {
                Error::internal(format!("cannot read the size of {}: {e}", path.display()))
            })?
            .len();
        if byte_size == 0 {
            return Err(Error::invalid_arg(format!(
                "shared memory region '{name}': byte_size must be greater than 0"
            )));
        }
        let end = offset
            .checked_add(byte_size)
            .filter(|&end| end <= object_size);
        if end.is_none() {
            return Err(Error::invalid_arg(format!(
                "shared memory region '{name}': offset {offset} + byte_size {byte_size} is outside the shared memory object '{key}' of {object_size} bytes"
            )));
        }
        let map = MmapOptions::new()
            .offset(offset)
            .len(byte_size as usize)
            .map_raw(&file)
            .map_err(|e| {
                Error::internal(format!(
                    "failed to map shared memory region '{name}' ('{key}'): {e}"
                ))
                .with_source(e)
            })?;
        let region = Region {
            status: SystemRegionStatus {
                name: name.to_string(),
                key: key.to_string(),
                offset,
                byte_size,
            },
            map: Arc::new(map),
        };
        let mut system = self.system.write();
        if system.contains_key(name) {
            return Err(Error::new(
                crate::ErrorCode::AlreadyExists,
                format!("shared memory region '{name}' already in manager"),
            ));
        }
        system.insert(name.to_string(), region);
        Ok(())
    }

    /// Unregisters one region (`Some(name)`; unknown names are not an error, as in Triton) or
    /// every region (`None`). Requests already holding a region's data keep the mapping alive
    /// until they finish.
    pub fn unregister_system(&self, name: Option<&str>) {
        let mut system = self.system.write();
        match name {
            Some(name) => {
                system.remove(name);
            }
            None => system.clear(),
        }
    }

    /// Status of one region or of all. An unknown name is NOT_FOUND.
    pub fn system_status(&self, name: Option<&str>) -> Result<Vec<SystemRegionStatus>> {
        let system = self.system.read();
        match name {
            Some(name) => system
                .get(name)
                .map(|r| vec![r.status.clone()])
                .ok_or_else(|| unknown_region(name)),
            None => Ok(system.values().map(|r| r.status.clone()).collect()),
        }
    }

    fn span(&self, at: &RegionRef) -> Result<(Arc<MmapRaw>, usize, usize)> {
        let system = self.system.read();
        let region = system
            .get(&at.region)
            .ok_or_else(|| unknown_region(&at.region))?;
        let size = region.status.byte_size;
        match at.offset.checked_add(at.byte_size) {
            Some(end) if end <= size => Ok((
                Arc::clone(&region.map),
                at.offset as usize,
                at.byte_size as usize,
            )),
            _ => Err(Error::invalid_arg(format!(
                "Invalid offset + byte size for shared memory region: '{}' (offset {} + byte size {} exceeds the region's {size} bytes)",
                at.region, at.offset, at.byte_size
            ))),
        }
    }

    /// An input's data, read in place (no copy): the bytes keep the mapping alive.
    pub fn input(&self, at: &RegionRef) -> Result<Bytes> {
        let (map, start, len) = self.span(at)?;
        Ok(Bytes::from_owner(MappedSlice { map, start, len }))
    }

    /// Writes an output into a region. `data` must fit in `at.byte_size`.
    pub fn write_output(&self, at: &RegionRef, name: &str, data: &[u8]) -> Result<()> {
        let (map, start, len) = self.span(at)?;
        if data.len() > len {
            return Err(Error::invalid_arg(format!(
                "shared memory region '{}' is too small for output '{name}': it needs {} bytes, the request gave {len}",
                at.region,
                data.len()
            )));
        }
        // SAFETY: `start + data.len() <= start + len`, within the mapping (checked by span);
        // the mapping is alive (we hold an Arc) and writable (opened read-write).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), map.as_mut_ptr().add(start), data.len())
        };
        Ok(())
    }

    /// CUDA shared memory: no region exists on a build or host without CUDA.
    pub fn cuda_status(&self, name: Option<&str>) -> Result<Vec<SystemRegionStatus>> {
        match name {
            Some(name) => Err(unknown_region(name)),
            None => Ok(Vec::new()),
        }
    }

    /// CUDA shared memory registration, refused with the reason on a build without CUDA.
    pub fn register_cuda(&self, name: &str) -> Result<()> {
        Err(Error::unsupported(format!(
            "cannot register CUDA shared memory region '{name}': this server has no CUDA support (no CUDA driver is loaded)"
        )))
    }

    /// CUDA shared memory unregistration: nothing to do without CUDA.
    pub fn unregister_cuda(&self, _name: Option<&str>) {}
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
        let path = shm_path(&key).unwrap();
        std::fs::write(&path, vec![0u8; size]).unwrap();
        (key, Object(path))
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn register_read_write_unregister() {
        let (key, _obj) = object(8192);
        let shm = SharedMemory::default();
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
        let at = RegionRef {
            region: "r".into(),
            offset: 8,
            byte_size: 4,
        };
        shm.write_output(&at, "OUT", &[1, 2, 3, 4]).unwrap();
        let input = shm.input(&at).unwrap();
        assert_eq!(&input[..], &[1, 2, 3, 4]);
        // the bytes the server wrote are in the object at offset + 8
        let raw = std::fs::read(shm_path(&key).unwrap()).unwrap();
        assert_eq!(&raw[4096 + 8..4096 + 12], &[1, 2, 3, 4]);
        // a duplicate name is refused
        assert_eq!(
            shm.register_system("r", &key, 0, 8).unwrap_err().code(),
            crate::ErrorCode::AlreadyExists
        );
        shm.unregister_system(Some("r"));
        assert!(shm.system_status(None).unwrap().is_empty());
        // data already taken keeps its mapping alive
        assert_eq!(&input[..], &[1, 2, 3, 4]);
        shm.unregister_system(Some("r"));
    }

    #[test]
    fn bad_regions_are_refused_by_name() {
        let (key, _obj) = object(100);
        let shm = SharedMemory::default();
        let e = shm
            .register_system("r", "/ferrite_no_such_object", 0, 10)
            .unwrap_err();
        assert!(
            e.message().contains("Unable to open shared memory region"),
            "{}",
            e.message()
        );
        let e = shm
            .register_system("r", "../etc/passwd", 0, 10)
            .unwrap_err();
        assert!(
            e.message()
                .contains("not a POSIX shared memory object name"),
            "{}",
            e.message()
        );
        let e = shm.register_system("r", &key, 90, 20).unwrap_err();
        assert!(
            e.message().contains("outside the shared memory object"),
            "{}",
            e.message()
        );
        let e = shm.register_system("r", &key, u64::MAX, 2).unwrap_err();
        assert!(e.message().contains("outside"), "{}", e.message());

        shm.register_system("r", &key, 0, 100).unwrap();
        let e = shm
            .input(&RegionRef {
                region: "r".into(),
                offset: 96,
                byte_size: 8,
            })
            .unwrap_err();
        assert!(
            e.message().contains("Invalid offset + byte size"),
            "{}",
            e.message()
        );
        let e = shm
            .input(&RegionRef {
                region: "nope".into(),
                offset: 0,
                byte_size: 1,
            })
            .unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::NotFound);
        let e = shm
            .write_output(
                &RegionRef {
                    region: "r".into(),
                    offset: 0,
                    byte_size: 2,
                },
                "OUT",
                &[0; 4],
            )
            .unwrap_err();
        assert!(
            e.message().contains("too small for output 'OUT'"),
            "{}",
            e.message()
        );
        assert_eq!(
            shm.system_status(Some("nope")).unwrap_err().code(),
            crate::ErrorCode::NotFound
        );
    }

    #[test]
    fn cuda_without_cuda() {
        let shm = SharedMemory::default();
        assert!(shm.cuda_status(None).unwrap().is_empty());
        assert_eq!(
            shm.register_cuda("g").unwrap_err().code(),
            crate::ErrorCode::Unsupported
        );
        shm.unregister_cuda(None);
    }
}
