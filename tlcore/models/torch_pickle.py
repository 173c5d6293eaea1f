"""Read legacy PyTorch checkpoints (state dicts) without PyTorch.

PyTorch saved checkpoints in a "legacy" (non-zip) format before version 1.6.
Such a file is a plain sequence of pickles followed by raw tensor bytes:

1. the magic number `0x1950a86a20f9469cfc6c`,
2. the protocol version `1001`,
3. a `sys_info` dict (byte order and C type sizes of the saving machine),
4. the saved object itself; tensors in it refer to their storages through
   pickle "persistent ids",
5. the list of storage keys, in the order their data follows,
6. for every storage key: its element count as a little-endian int64, then
   its elements as raw bytes.

Unpickling runs code named by the file, so `torch.load` on an untrusted file
is unsafe. This module instead uses a restricted unpickler that resolves only
the handful of names a state dict needs, each mapped to a harmless local
stand-in, and refuses every other global with `pickle.UnpicklingError`.
"""

import collections
import io
import pickle
import struct

import numpy as np

# Values that `torch.save` wrote in front of every legacy checkpoint.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# The legacy format always pickles the magic number with protocol 2, so a
# checkpoint file starts with exactly these bytes. Checking them before any
# unpickling lets us reject other files without running their pickles at all.
_LEGACY_PREFIX = pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2)

# Element type of each storage class, without byte order (added from the
# checkpoint's sys_info). BFloat16 has no numpy type; it is widened below.
_STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class ForbiddenGlobalError(pickle.UnpicklingError):
    """Raised when a pickle references a global outside the allow-list."""


class StorageType:
    """Stand-in for a `torch.<Type>Storage` class named by a checkpoint.

    Args:
        name: the storage class name, e.g. `"FloatStorage"`.
    """

    def __init__(self, name):
        self.name = name
        self.dtype_code = _STORAGE_DTYPES[name]

    def __repr__(self):
        return f"StorageType({self.name!r})"


class Storage:
    """A flat buffer of elements, filled once the raw bytes are read.

    Args:
        storage_type: the `StorageType` the checkpoint declared.
        key: the storage key used in the persistent id and the key list.
        element_count: number of elements the persistent id declared.
    """

    def __init__(self, storage_type, key, element_count):
        self.storage_type = storage_type
        self.key = key
        self.element_count = element_count
        self.data = None  # 1-D numpy array, set by `_read_storage_data`.


class TensorRecord:
    """What `torch._utils._rebuild_tensor_v2` would have rebuilt.

    Args:
        storage: the `Storage` holding the elements.
        storage_offset: index of the first element, in elements.
        size: the tensor shape.
        stride: the step between neighbours along each axis, in elements.
    """

    def __init__(self, storage, storage_offset, size, stride):
        self.storage = storage
        self.storage_offset = int(storage_offset)
        self.size = tuple(int(dimension) for dimension in size)
        self.stride = tuple(int(step) for step in stride)


def _rebuild_tensor_v2(
    storage,
    storage_offset,
    size,
    stride,
    requires_grad=False,
    backward_hooks=None,
    metadata=None,
):
    """Stand-in for `torch._utils._rebuild_tensor_v2`: records the view."""
    if not isinstance(storage, Storage):
        raise pickle.UnpicklingError(
            "_rebuild_tensor_v2 received a storage of type "
            f"{type(storage).__name__}, expected a persistent storage record"
        )
    return TensorRecord(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """Stand-in for `torch._utils._rebuild_parameter`: a Parameter is just
    its tensor once gradients no longer matter."""
    return data


# (module, name) -> the local object the unpickler hands out instead.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
for _storage_name in _STORAGE_DTYPES:
    _ALLOWED_GLOBALS[("torch", _storage_name)] = StorageType(_storage_name)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only resolves the names a state dict needs.

    Storage records (persistent ids) become `Storage` objects that are
    collected in `storages`, keyed by their storage key, so the caller can
    fill them from the bytes that follow the pickles.

    Args:
        file: a binary file object positioned at a pickle.
    """

    def __init__(self, file):
        super().__init__(file)
        self.storages = {}

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise ForbiddenGlobalError(
                f"Refusing to load global '{module}.{name}': only "
                "collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
                "torch._utils._rebuild_parameter and torch.*Storage classes "
                "are allowed in a state dict checkpoint"
            )
        return allowed

    def persistent_load(self, persistent_id):
        # Legacy format: ("storage", storage_type, key, location, numel, view).
        if not isinstance(persistent_id, tuple) or len(persistent_id) != 6 or persistent_id[0] != "storage":
            raise pickle.UnpicklingError(
                f"Received persistent id {persistent_id!r}, expected a tuple "
                "('storage', storage_type, key, location, numel, view_metadata)"
            )
        _, storage_type, key, _location, element_count, view_metadata = persistent_id
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"Received storage type {storage_type!r}, expected a torch.*Storage class")
        if view_metadata is not None:
            # Storage views were only written by PyTorch < 0.4.
            raise pickle.UnpicklingError(
                f"Received storage view metadata {view_metadata!r}, expected "
                "None (storage views from PyTorch < 0.4 are not supported)"
            )
        storage = self.storages.get(key)
        if storage is None:
            storage = Storage(storage_type, key, int(element_count))
            self.storages[key] = storage
        return storage


def _restricted_load(file):
    """Unpickles one object from `file` with the restricted unpickler."""
    unpickler = RestrictedUnpickler(file)
    return unpickler.load(), unpickler.storages


def _read_exactly(file, byte_count, what):
    data = file.read(byte_count)
    if len(data) != byte_count:
        raise ValueError(f"file ended inside {what}: received {len(data)} bytes, expected {byte_count}")
    return data


def _read_storage_data(file, storage, byte_order):
    """Reads one storage's element count and raw bytes into `storage.data`."""
    (element_count,) = struct.unpack("<q", _read_exactly(file, 8, f"the size of storage {storage.key}"))
    if element_count != storage.element_count:
        raise ValueError(
            f"storage {storage.key} holds {element_count} elements, expected "
            f"{storage.element_count} as declared in the pickle"
        )
    dtype = np.dtype(byte_order + storage.storage_type.dtype_code)
    raw = _read_exactly(file, element_count * dtype.itemsize, f"the data of storage {storage.key}")
    data = np.frombuffer(raw, dtype=dtype)
    if storage.storage_type.name == "BFloat16Storage":
        # bfloat16 is the upper half of a float32: shift it back into place.
        data = (data.astype(np.uint32) << 16).view(np.float32)
    storage.data = data


def _tensor_to_array(name, record):
    """Materialises a `TensorRecord` as an owned, C-contiguous numpy array."""
    data = record.storage.data
    size, stride, offset = record.size, record.stride, record.storage_offset
    if len(size) != len(stride):
        raise ValueError(f"tensor '{name}' has size {size} and stride {stride}, expected the same number of dimensions")
    element_count = int(np.prod(size, dtype=np.int64))
    if element_count == 0:
        return np.zeros(size, dtype=data.dtype)
    if offset < 0 or any(step < 0 for step in stride):
        raise ValueError(f"tensor '{name}' has offset {offset} and stride {stride}, expected non-negative values")
    last_index = offset + sum((dimension - 1) * step for dimension, step in zip(size, stride))
    if last_index >= data.size:
        raise ValueError(
            f"tensor '{name}' (offset {offset}, size {size}, stride {stride}) "
            f"reaches element {last_index}, but its storage only has "
            f"{data.size} elements"
        )

    # Row-major strides for `size`; size-1 axes may carry any stride.
    contiguous_stride = []
    step = 1
    for dimension in reversed(size):
        contiguous_stride.insert(0, step)
        step *= dimension
    is_contiguous = all(
        dimension == 1 or actual == expected for dimension, actual, expected in zip(size, stride, contiguous_stride)
    )
    if is_contiguous:
        array = data[offset : offset + element_count].reshape(size)
    else:
        array = np.lib.stride_tricks.as_strided(
            data[offset:],
            shape=size,
            strides=[step * data.itemsize for step in stride],
            writeable=False,
        )
    # Copy so the result owns writable memory in native byte order.
    return np.array(array, dtype=data.dtype.newbyteorder("="), order="C", copy=True)


def read_state_dict_bytes(content, source="<bytes>"):
    """Decodes a legacy PyTorch state dict held in memory.

    Args:
        content: the whole checkpoint file, as bytes.
        source: how to name the checkpoint in error messages (a path).

    Returns:
        A dict mapping parameter names to numpy arrays, in checkpoint order.

    Raises:
        ValueError: `content` is not a legacy PyTorch state dict checkpoint.
        pickle.UnpicklingError: the checkpoint references a global outside
            the allow-list (a `ForbiddenGlobalError`); nothing is executed.
    """
    if content[:4] == b"PK\x03\x04":
        raise ValueError(
            f"{source}: received a zip-format PyTorch checkpoint (saved by "
            "PyTorch >= 1.6), expected the legacy non-zip format"
        )
    if not content.startswith(_LEGACY_PREFIX):
        raise ValueError(
            f"{source}: received a file starting with {content[:16]!r}, "
            "expected a legacy PyTorch checkpoint starting with the pickled "
            f"magic number {LEGACY_MAGIC_NUMBER:#x}"
        )

    file = io.BytesIO(content)
    try:
        file.seek(len(_LEGACY_PREFIX))
        protocol_version, _ = _restricted_load(file)
        if protocol_version != LEGACY_PROTOCOL_VERSION:
            raise ValueError(
                f"received checkpoint protocol version {protocol_version!r}, expected {LEGACY_PROTOCOL_VERSION}"
            )
        system_info, _ = _restricted_load(file)
        if not isinstance(system_info, dict):
            raise ValueError(f"received sys_info of type {type(system_info).__name__}, expected a dict")
        byte_order = "<" if system_info.get("little_endian", True) else ">"

        state_dict, storages = _restricted_load(file)
        if not isinstance(state_dict, dict):
            raise ValueError(
                f"received a saved object of type {type(state_dict).__name__}, "
                "expected a state dict (a dict of tensors)"
            )
        storage_keys, _ = _restricted_load(file)
        if not isinstance(storage_keys, list) or set(storage_keys) != set(storages):
            raise ValueError(
                f"received storage key list {storage_keys!r:.200}, expected the "
                f"{len(storages)} keys referenced by the tensors"
            )
        for key in storage_keys:
            _read_storage_data(file, storages[key], byte_order)

        arrays = {}
        for name, value in state_dict.items():
            if not isinstance(value, TensorRecord):
                raise ValueError(f"entry '{name}' is of type {type(value).__name__}, expected a tensor")
            arrays[str(name)] = _tensor_to_array(name, value)
    except ForbiddenGlobalError:
        raise
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError, struct.error) as error:
        raise ValueError(
            f"{source}: not a valid legacy PyTorch checkpoint ({type(error).__name__}: {error})"
        ) from error
    return arrays


def load_state_dict(path):
    """Loads a legacy (non-zip) PyTorch state dict without PyTorch.

    Args:
        path: path of a `.pth`/`.pt` file written by `torch.save(state_dict)`
            with PyTorch < 1.6 (or with `_use_new_zipfile_serialization=False`).

    Returns:
        A dict mapping parameter names to numpy arrays, in checkpoint order.
        Arrays own their memory, are C-contiguous and in native byte order.

    Raises:
        ValueError: the file is not a legacy PyTorch state dict checkpoint;
            the message names the path and the reason.
        pickle.UnpicklingError: the checkpoint references a global outside
            the allow-list; nothing is executed.
    """
    with open(path, "rb") as file:
        content = file.read()
    return read_state_dict_bytes(content, source=str(path))
