"""Read MXNet's NDArray file format (``.params``) with numpy alone.

GluonNLP 0.10's ``save_parameters`` and ``mx.nd.save`` write this layout
(little-endian, MXNet 1.x ``src/ndarray/ndarray.cc``)::

    uint64 0x112 (list magic)   uint64 reserved
    uint64 n_arrays, then per array:
        uint32 magic  (0xF993FAC9 = V2 with storage type, 0xF993FACA = V3,
                       0xF993FAC8 = V1; anything else = legacy: that word is ndim)
        int32  storage type (V2/V3 only; 0 = dense)
        shape: uint32 ndim (int32 in V3) + int64 dims (uint32 dims in legacy files)
        int32 dev_type, int32 dev_id, int32 type_flag, then the raw data
    uint64 n_names, then per name: uint64 length + bytes

so ``.params`` files from the original fine-tuning scripts can be read on a
machine that has no MXNet (numpy 2, a GPU box with only PyTorch).
"""
from __future__ import annotations

import struct

import numpy as np

LIST_MAGIC = 0x112
V1, V2, V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32,
          5: np.int8, 6: np.int64, 7: np.bool_}
DTYPE_NAMES = {12: "bfloat16"}


class NDArrayFileError(ValueError):
    pass


class _Reader:
    def __init__(self, buf: bytes, path: str):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise NDArrayFileError(f"{self.path}: file ends at byte {len(self.buf)} while reading "
                                   f"{size} more bytes at offset {self.pos} (truncated file?)")
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return out if len(out) > 1 else out[0]

    def array(self, index: int) -> np.ndarray | None:
        magic = self.take("<I")
        if magic in (V2, V3):
            stype = self.take("<i")
            if stype != 0:
                raise NDArrayFileError(f"{self.path}: array #{index} is sparse (storage type "
                                       f"{stype}); only dense arrays are supported")
            ndim = self.take("<i" if magic == V3 else "<I")
            if ndim <= 0:
                return None  # an empty (none) NDArray: nothing else was written
            shape = self.take(f"<{ndim}q") if ndim else ()
        elif magic == V1:
            ndim = self.take("<I")
            if ndim == 0:
                return None
            shape = self.take(f"<{ndim}q")
        else:  # legacy: the first word is ndim, dims are uint32
            ndim = magic
            if ndim > 32:
                raise NDArrayFileError(f"{self.path}: array #{index} has an unknown header "
                                       f"0x{magic:08X}; not an MXNet NDArray file")
            if ndim == 0:
                return None
            shape = self.take(f"<{ndim}I")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        _dev_type, _dev_id, type_flag = self.take("<iii")
        if type_flag not in DTYPES:
            name = DTYPE_NAMES.get(type_flag, f"type flag {type_flag}")
            raise NDArrayFileError(f"{self.path}: array #{index} has dtype {name}, "
                                   "which bertg4 cannot read without MXNet")
        dtype = np.dtype(DTYPES[type_flag])
        count = int(np.prod(shape))
        nbytes = count * dtype.itemsize
        if self.pos + nbytes > len(self.buf):
            raise NDArrayFileError(f"{self.path}: array #{index} of shape {shape} needs {nbytes} "
                                   f"bytes but the file ends after {len(self.buf) - self.pos} "
                                   "(truncated file?)")
        arr = np.frombuffer(self.buf, dtype=dtype.newbyteorder("<"), count=count,
                            offset=self.pos).reshape(shape).copy()
        self.pos += nbytes
        return arr


def load(path: str) -> dict[str, np.ndarray]:
    """Read a ``.params`` file into ``{name: numpy array}`` (names as saved)."""
    with open(path, "rb") as f:
        buf = f.read()
    r = _Reader(buf, str(path))
    magic = r.take("<Q") if len(buf) >= 8 else None
    if magic != LIST_MAGIC:
        raise NDArrayFileError(f"{path}: not an MXNet NDArray file (first 8 bytes are not the "
                               "list magic 0x112)")
    r.take("<Q")  # reserved
    n = r.take("<Q")
    arrays = [r.array(i) for i in range(n)]
    n_names = r.take("<Q")
    if n_names != n:
        raise NDArrayFileError(f"{path}: {n} arrays but {n_names} names; bertg4 reads named "
                               "parameter files (save_parameters / nd.save of a dict)")
    names = []
    for _ in range(n_names):
        length = r.take("<Q")
        if r.pos + length > len(buf):
            raise NDArrayFileError(f"{path}: a parameter name runs past the end of the file "
                                   "(truncated file?)")
        names.append(buf[r.pos:r.pos + length].decode("utf-8"))
        r.pos += length
    return {k: v for k, v in zip(names, arrays) if v is not None}
