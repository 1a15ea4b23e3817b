"""Read a legacy (pre-1.6, non-zip) ``torch.save`` file with pickle + numpy only.

Layout of the legacy format (torch/serialization.py, ``_legacy_save``):

1. pickle: magic number ``0x1950a86a20f9469cfc6c``
2. pickle: protocol version (``1001``)
3. pickle: sys_info dict (endianness, C type sizes)
4. pickle: the saved object.  Tensors are pickled as
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
   where ``storage`` is a *persistent id*
   ``("storage", <StorageType>, key, location, numel, view_metadata)``.
5. pickle: list of storage keys, in the order their data follows
6. for every key: little-endian int64 element count, then the raw elements.

Only what is needed for plain state dicts is supported (CPU storages, tensors
that may be non-contiguous views, ``OrderedDict`` containers).  No torch import.
"""

from __future__ import annotations

import collections
import pickle
import struct

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch legacy storage class name -> numpy dtype (little endian)
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES:
            raise ValueError(f"unsupported torch storage type torch.{name}")
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """Placeholder for a storage whose bytes follow the pickled object."""

    def __init__(self, stype: _StorageType, key: str, numel: int):
        self.dtype = stype.dtype
        self.key = key
        self.numel = numel
        self.data: np.ndarray | None = None


class _LazyTensor:
    """A tensor view on a storage, materialised once the storage is read."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def materialise(self) -> np.ndarray:
        base = self.storage.data
        assert base is not None, f"storage {self.storage.key} was never read"
        if not self.size:
            return base[self.offset].copy()
        # bounds check: the furthest element the view touches must lie in the storage
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if last >= base.size:
            raise ValueError(f"tensor view exceeds storage {self.storage.key}")
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *rest):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, f):
        super().__init__(f)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils":
            if name == "_rebuild_tensor_v2":
                return _rebuild_tensor_v2
            if name == "_rebuild_tensor":
                return _rebuild_tensor
            if name == "_rebuild_parameter":
                return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, stype, key, _location, numel, view_metadata = pid
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        st = self.storages.get(key)
        if st is None:
            st = _Storage(stype, key, int(numel))
            self.storages[key] = st
        return st


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def load(path) -> object:
    """Load a legacy torch file; tensors come back as contiguous numpy arrays."""
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head[:2] == b"PK":
            raise ValueError(f"{path}: zip-format torch file, only the legacy format is supported")
        if pickle.load(f) != MAGIC_NUMBER:
            raise ValueError(f"{path}: not a legacy torch file (bad magic number)")
        if pickle.load(f) != PROTOCOL_VERSION:
            raise ValueError(f"{path}: unsupported legacy protocol version")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian torch files are not supported")
        up = _Unpickler(f)
        obj = up.load()
        keys = pickle.load(f)
        for key in keys:
            st = up.storages.get(key)
            (numel,) = struct.unpack("<q", f.read(8))
            if st is None:
                raise ValueError(f"{path}: unreferenced storage {key}")
            if numel != st.numel:
                raise ValueError(f"{path}: storage {key} has {numel} elements, expected {st.numel}")
            nbytes = numel * st.dtype.itemsize
            buf = f.read(nbytes)
            if len(buf) != nbytes:
                raise ValueError(f"{path}: truncated data for storage {key}")
            st.data = np.frombuffer(buf, dtype=st.dtype)
        if f.read(1):
            raise ValueError(f"{path}: trailing bytes after the last storage")
    return _materialise(obj)
