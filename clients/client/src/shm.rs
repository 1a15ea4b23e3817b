//! POSIX system shared memory objects (`/dev/shm/<key>`), mapped into this process, for the
//! system shared memory extension: create a region, write inputs into it, register it with
//! the server, read outputs back.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use memmap2::MmapMut;

use crate::error::{Error, ErrorKind, Result};

/// A mapped POSIX shared memory object. A region made by [`SharedMemoryRegion::create`] is
/// unlinked when dropped (unregister it from the server first); one opened with
/// [`SharedMemoryRegion::open`] is left in place.
#[derive(Debug)]
pub struct SharedMemoryRegion {
    key: String,
    path: PathBuf,
    map: MmapMut,
    owner: bool,
}

/// `/dev/shm/<key without leading slashes>`, as glibc's `shm_open` finds it.
fn shm_path(key: &str) -> Result<(String, PathBuf)> {
    let name = key.trim_start_matches('/');
    if name.is_empty() || name.contains('/') {
        return Err(Error::invalid(format!(
            "bad shared memory key '{key}': one name, optionally with a leading '/'"
        )));
    }
    Ok((format!("/{name}"), PathBuf::from("/dev/shm").join(name)))
}

fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what} {}: {e}", path.display()))
}

impl SharedMemoryRegion {
    /// Creates (or truncates) the object `key` ("/name" or "name") of `byte_size` bytes, zero
    /// filled, and maps it.
    pub fn create(key: &str, byte_size: usize) -> Result<SharedMemoryRegion> {
        if byte_size == 0 {
            return Err(Error::invalid(
                "a shared memory region needs at least one byte",
            ));
        }
        let (key, path) = shm_path(key)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io("cannot create", &path, e))?;
        file.set_len(byte_size as u64)
            .map_err(|e| io("cannot size", &path, e))?;
        let map = Self::map(&file, &path)?;
        Ok(SharedMemoryRegion {
            key,
            path,
            map,
            owner: true,
        })
    }

    /// Maps the existing object `key`; it is not unlinked on drop.
    pub fn open(key: &str) -> Result<SharedMemoryRegion> {
        let (key, path) = shm_path(key)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("cannot open", &path, e))?;
        let map = Self::map(&file, &path)?;
        Ok(SharedMemoryRegion {
            key,
            path,
            map,
            owner: false,
        })
    }

    fn map(file: &File, path: &std::path::Path) -> Result<MmapMut> {
        // SAFETY: a shared mapping of a shared memory object. Another process (the server) may
        // write it concurrently — that is the point of shared memory; this process only reads
        // it as plain bytes, never as typed references that such a write could invalidate.
        unsafe { MmapMut::map_mut(file) }.map_err(|e| io("cannot map", path, e))
    }

    /// The key to register with the server ("/name").
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: regions have at least one byte.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The whole region.
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    /// The whole region, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }

    fn range(&self, offset: usize, len: usize) -> Result<std::ops::Range<usize>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.map.len() => Ok(offset..end),
            _ => Err(Error::invalid(format!(
                "{len} bytes at offset {offset} do not fit in shared memory region {} of {} bytes",
                self.key,
                self.map.len()
            ))),
        }
    }

    /// Copies `data` into the region at `offset`.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        let range = self.range(offset, data.len())?;
        self.map[range].copy_from_slice(data);
        Ok(())
    }

    /// `len` bytes at `offset`.
    pub fn read(&self, offset: usize, len: usize) -> Result<&[u8]> {
        let range = self.range(offset, len)?;
        Ok(&self.map[range])
    }

    /// Removes the object's name now (the mapping stays valid until dropped).
    pub fn unlink(&mut self) -> Result<()> {
        self.owner = false;
        std::fs::remove_file(&self.path).map_err(|e| io("cannot unlink", &self.path, e))
    }
}

impl Drop for SharedMemoryRegion {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_write_read_open_unlink() {
        let key = format!("/ferrite_client_test_{}", std::process::id());
        let mut r = SharedMemoryRegion::create(&key, 16).unwrap();
        assert_eq!(r.key(), key);
        r.write(4, &[1, 2, 3]).unwrap();
        assert!(r.write(15, &[1, 2]).is_err());
        let other = SharedMemoryRegion::open(key.trim_start_matches('/')).unwrap();
        assert_eq!(other.read(3, 5).unwrap(), &[0, 1, 2, 3, 0]);
        drop(other);
        drop(r);
        assert!(SharedMemoryRegion::open(&key).is_err());
        assert!(SharedMemoryRegion::create("a/b", 1).is_err());
    }
}
