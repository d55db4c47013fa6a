"""The logitlab model file: safe to load, written atomically.

Format (version 1): an uncompressed zip holding

* ``logitlab.json`` -- ``{"format": "logitlab-model", "version": 1, "kind": ...,
  "config": {...}, "arrays": [{"name", "dtype", "shape"}, ...]}``, at most 1 MiB;
* ``arrays/<i>.npy`` -- one NumPy array per entry of ``"arrays"``.

Loading never unpickles, imports or evaluates anything from the file: the
JSON is data, object types are looked up by name in fixed tables, and the
``.npy`` headers are parsed here and checked against the bytes that are
actually present before any array is created, so memory stays proportional
to the file's size. Every problem raises :class:`ModelFileError`.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from ._io import atomic_write
from ._validation import LogitlabError

FORMAT = "logitlab-model"
VERSION = 1
HEADER = "logitlab.json"
MAX_HEADER_BYTES = 1 << 20
_ALLOWED_DTYPES = {"<f2", "<f4", "<f8", "<i4", "<i8", "|b1", "|u1", "<u4"}


class ModelFileError(LogitlabError):
    """A model file that is missing, truncated, corrupt, foreign or of another version."""


def write_model_file(path, kind: str, config: dict, arrays: dict[str, np.ndarray]):
    """Write a model file atomically (temporary sibling, fsync, ``os.replace``)."""
    names = list(arrays)
    entries = []
    for name in names:
        a = np.ascontiguousarray(arrays[name])
        if a.dtype.kind == "U":  # strings travel in the JSON, never as object arrays
            raise TypeError(f"array {name!r} holds strings; put them in the config")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        arrays[name] = a
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape)})
    header = {"format": FORMAT, "version": VERSION, "kind": kind, "config": config,
              "arrays": entries}
    blob = json.dumps(header, allow_nan=False).encode("utf-8")
    if len(blob) > MAX_HEADER_BYTES:
        raise ValueError(f"model header of {len(blob)} bytes exceeds {MAX_HEADER_BYTES}")
    with atomic_write(path, "wb") as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(HEADER, blob)
            for i, name in enumerate(names):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arrays[name], allow_pickle=False)
                zf.writestr(f"arrays/{i}.npy", buf.getvalue())


def _parse_npy(data: bytes, where: str, dtype: str, shape: list) -> np.ndarray:
    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    if version == (1, 0):
        got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(buf)
    elif version in ((2, 0), (3, 0)):
        got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(buf)
    else:
        raise ModelFileError(f"{where}: unsupported .npy version {version}")
    if got_dtype.str != dtype or got_dtype.hasobject or list(got_shape) != shape or fortran:
        raise ModelFileError(f"{where}: array header does not match the model header")
    count = int(np.prod(got_shape, dtype=np.int64))
    payload = data[buf.tell():]
    if count < 0 or len(payload) != count * got_dtype.itemsize:
        raise ModelFileError(
            f"{where}: holds {len(payload)} bytes of data, expected {count * got_dtype.itemsize}"
        )
    return np.frombuffer(payload, dtype=got_dtype).reshape(got_shape).copy()


def read_model_file(path, kinds=None):
    """Read a model file; returns ``(kind, config, arrays)``.

    ``kinds`` restricts the accepted kinds. Raises :class:`ModelFileError`
    naming what is wrong, for any damage to the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"no model file at {path!r}")
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {i.filename: i for i in zf.infolist()}
            if HEADER not in infos:
                raise ModelFileError(f"{path!r} is not a logitlab model file (no {HEADER})")
            for info in infos.values():
                # stored entries only, and sizes that fit in the file: zipfile sizes its
                # read buffers from these fields, so a corrupt one must not get that far
                if (info.compress_type != zipfile.ZIP_STORED or info.file_size > size
                        or info.compress_size != info.file_size):
                    raise ModelFileError(f"{path!r}: entry {info.filename!r} is not stored plainly")
            if infos[HEADER].file_size > MAX_HEADER_BYTES:
                raise ModelFileError(f"{path!r}: header larger than {MAX_HEADER_BYTES} bytes")
            header = json.loads(zf.read(HEADER).decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ModelFileError(f"{path!r} is not a logitlab model file")
            if header.get("version") != VERSION:
                raise ModelFileError(
                    f"{path!r} has format version {header.get('version')!r}; this logitlab "
                    f"reads version {VERSION}"
                )
            kind, config, entries = header.get("kind"), header.get("config"), header.get("arrays")
            if not isinstance(kind, str) or not isinstance(config, dict) or not isinstance(entries, list):
                raise ModelFileError(f"{path!r}: malformed header")
            if kinds is not None and kind not in kinds:
                raise ModelFileError(
                    f"{path!r} holds a {kind!r}; expected one of {sorted(kinds)}"
                )
            if len(infos) != len(entries) + 1:
                raise ModelFileError(f"{path!r}: unexpected entries in the archive")
            arrays = {}
            for i, entry in enumerate(entries):
                name = f"arrays/{i}.npy"
                if (not isinstance(entry, dict) or name not in infos
                        or entry.get("dtype") not in _ALLOWED_DTYPES
                        or not isinstance(entry.get("shape"), list)
                        or not all(isinstance(d, int) and 0 <= d for d in entry["shape"])
                        or not isinstance(entry.get("name"), str)):
                    raise ModelFileError(f"{path!r}: malformed array entry {i}")
                arrays[entry["name"]] = _parse_npy(zf.read(name), f"{path!r} {name}",
                                                   entry["dtype"], entry["shape"])
    except ModelFileError:
        raise
    except MemoryError:  # pragma: no cover - guarded above by the size checks
        raise
    except Exception as exc:  # any damage: zip structure, CRC, JSON, npy header
        raise ModelFileError(f"{path!r} is corrupt or not a logitlab model file: "
                             f"{type(exc).__name__}: {exc}") from None
    return kind, config, arrays
