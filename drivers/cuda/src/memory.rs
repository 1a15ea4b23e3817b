//! CUDA shared memory: device memory a client process shares with the server through a CUDA
//! IPC memory handle (`cudaIpcMemHandle_t`, what `tritonclient.utils.cuda_shared_memory`
//! registers), opened in the device's primary context; the host copies request inputs from
//! it and outputs to it through [`IpcMemory`].

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, sys};
use ferrite_driver_sdk::{Error, MemoryHandle, Result, SharedDeviceMemory, abi};

/// The size of a `cudaIpcMemHandle_t`.
pub const IPC_HANDLE_SIZE: usize = 64;

/// The primary context of each GPU, retained the first time memory is opened on it.
#[derive(Default)]
pub struct Contexts(Mutex<Vec<Option<Arc<CudaContext>>>>);

impl Contexts {
    fn get(&self, ordinal: usize) -> Result<Arc<CudaContext>> {
        let mut contexts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if contexts.len() <= ordinal {
            contexts.resize(ordinal + 1, None);
        }
        if let Some(ctx) = &contexts[ordinal] {
            return Ok(Arc::clone(ctx));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| {
            Error::unavailable(format!("cannot make a CUDA context on GPU {ordinal}: {e}"))
        })?;
        contexts[ordinal] = Some(Arc::clone(&ctx));
        Ok(ctx)
    }
}

/// Checks what a client registered before any CUDA call: GPU memory, a whole IPC handle, a
/// GPU that is here.
pub fn check(handle: &MemoryHandle<'_>, gpu_count: usize) -> Result<usize> {
    if handle.kind != abi::MemoryKind::Gpu {
        return Err(Error::unsupported(format!(
            "the CUDA driver opens GPU memory, not {:?} memory",
            handle.kind
        )));
    }
    if handle.handle.len() != IPC_HANDLE_SIZE {
        return Err(Error::invalid_arg(format!(
            "raw_handle must be a {IPC_HANDLE_SIZE}-byte CUDA IPC memory handle (cudaIpcMemHandle_t), got {} bytes",
            handle.handle.len()
        )));
    }
    usize::try_from(handle.device_id)
        .ok()
        .filter(|&d| d < gpu_count)
        .ok_or_else(|| {
            Error::invalid_arg(format!(
                "device_id {} is not a GPU of this machine ({gpu_count} GPU{})",
                handle.device_id,
                if gpu_count == 1 { "" } else { "s" }
            ))
        })
}

/// An opened IPC allocation: `byte_size` bytes from `ptr` on the context's GPU.
pub struct IpcMemory {
    ctx: Arc<CudaContext>,
    ptr: sys::CUdeviceptr,
}

fn cuda(what: &str, result: sys::CUresult) -> Result<()> {
    result
        .result()
        .map_err(|e| Error::internal(format!("{what} failed: {e}")))
}

impl IpcMemory {
    /// Opens `handle` on GPU `ordinal`, checking the allocation holds `byte_size` bytes.
    pub fn open(
        contexts: &Contexts,
        ordinal: usize,
        handle: &[u8],
        byte_size: u64,
    ) -> Result<IpcMemory> {
        let ctx = contexts.get(ordinal)?;
        ctx.bind_to_thread()
            .map_err(|e| Error::internal(format!("cannot use GPU {ordinal}: {e}")))?;
        let mut raw = sys::CUipcMemHandle_st {
            reserved: [0; IPC_HANDLE_SIZE],
        };
        for (to, from) in raw.reserved.iter_mut().zip(handle) {
            *to = *from as std::ffi::c_char;
        }
        let mut ptr: sys::CUdeviceptr = 0;
        // SAFETY: the context is current on this thread; the handle is a plain 64-byte value
        // and the out-pointer is valid. A handle that is not one CUDA recognises is an error.
        cuda("cuIpcOpenMemHandle", unsafe {
            sys::cuIpcOpenMemHandle_v2(
                &mut ptr,
                raw,
                sys::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as u32,
            )
        })
        .map_err(|e| {
            Error::invalid_arg(format!(
                "failed to open CUDA IPC handle on GPU {ordinal}: {}",
                e.message
            ))
        })?;
        let memory = IpcMemory { ctx, ptr };
        let (mut base, mut size): (sys::CUdeviceptr, usize) = (0, 0);
        // SAFETY: `ptr` is a device pointer just opened in the current context.
        cuda("cuMemGetAddressRange", unsafe {
            sys::cuMemGetAddressRange_v2(&mut base, &mut size, ptr)
        })?;
        let available = (base + size as u64).saturating_sub(ptr);
        if byte_size > available {
            // Dropping `memory` closes the handle.
            return Err(Error::invalid_arg(format!(
                "byte_size {byte_size} is larger than the shared CUDA allocation ({available} bytes)"
            )));
        }
        Ok(memory)
    }

    fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| Error::internal(format!("cannot use the GPU: {e}")))
    }
}

impl SharedDeviceMemory for IpcMemory {
    fn read(&self, offset: u64, dst: &mut [u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: the host checked `offset + len` against the registered size, which `open`
        // checked against the allocation; `dst` is writable for its length.
        cuda("cuMemcpyDtoH", unsafe {
            sys::cuMemcpyDtoH_v2(dst.as_mut_ptr().cast(), self.ptr + offset, dst.len())
        })
    }

    fn write(&self, offset: u64, src: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: as for read; `src` is readable for its length.
        cuda("cuMemcpyHtoD", unsafe {
            sys::cuMemcpyHtoD_v2(self.ptr + offset, src.as_ptr().cast(), src.len())
        })
    }
}

impl Drop for IpcMemory {
    fn drop(&mut self) {
        if self.bind().is_ok() {
            // SAFETY: opened by cuIpcOpenMemHandle in this context, closed once.
            let _ = unsafe { sys::cuIpcCloseMemHandle(self.ptr) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(kind: abi::MemoryKind, bytes: &[u8], device_id: i64) -> MemoryHandle<'_> {
        MemoryHandle {
            kind,
            device_id,
            handle: bytes,
            byte_size: 64,
        }
    }

    #[test]
    fn what_is_registered_is_checked_first() {
        let ok = [0u8; 64];
        assert_eq!(check(&handle(abi::MemoryKind::Gpu, &ok, 1), 2).unwrap(), 1);
        let e = check(&handle(abi::MemoryKind::Cpu, &ok, 0), 2).unwrap_err();
        assert_eq!(e.code, ferrite_driver_sdk::ErrorCode::Unsupported);
        let e = check(&handle(abi::MemoryKind::Gpu, &ok[..10], 0), 2).unwrap_err();
        assert_eq!(
            e.message,
            "raw_handle must be a 64-byte CUDA IPC memory handle (cudaIpcMemHandle_t), got 10 bytes"
        );
        let e = check(&handle(abi::MemoryKind::Gpu, &ok, 2), 2).unwrap_err();
        assert_eq!(
            e.message,
            "device_id 2 is not a GPU of this machine (2 GPUs)"
        );
        let e = check(&handle(abi::MemoryKind::Gpu, &ok, -1), 1).unwrap_err();
        assert_eq!(
            e.message,
            "device_id -1 is not a GPU of this machine (1 GPU)"
        );
    }
}
