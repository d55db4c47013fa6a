"""The logitlab model file: safe to load, written atomically.

Format (version 1): an uncompressed zip holding

* ``logitlab.json`` -- ``{"format": "logitlab-model", "version": 1, "kind": ...,
  "config": {...}, "arrays": [{"name", "dtype", "shape"}, ...]}``, at most 1 MiB;
* ``arrays/<i>.npy`` -- one NumPy array per entry of ``"arrays"``.

A list of many strings in the config (a sparse file's 100,000 feature names:
over 1 MiB of JSON) travels as two arrays instead, its UTF-8 bytes and where
each string ends (``strings/<k>/utf8``, ``strings/<k>/ends``), the config
holding ``{"__strings__": k}`` in its place (:func:`_pack_strings`); the
reader puts the list back, so callers see the config they wrote.

Loading never unpickles, imports or evaluates anything from the file: the
JSON is data, object types are looked up by name in fixed tables, and the
``.npy`` headers are parsed here and checked against the bytes that are
actually present before any array is created. The archive's entries must lie
in order, apart from each other and from the central directory, with no name
(and no JSON key) twice, so the bytes read add up to at most the file's size
and memory stays proportional to it; what the JSON declares is checked against
the arrays before anything is built (``models/_file_checks.py``,
``estimators/_persist.py``). Every problem raises :class:`ModelFileError`.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import zipfile

import numpy as np

from ._io import atomic_write
from ._validation import LogitlabError

FORMAT = "logitlab-model"
VERSION = 1
HEADER = "logitlab.json"
MAX_HEADER_BYTES = 1 << 20
_ALLOWED_DTYPES = {"<f2", "<f4", "<f8", "<i4", "<i8", "|b1", "|u1", "<u4"}
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # a zip local file header, before its name and extra


class ModelFileError(LogitlabError):
    """A model file that is missing, truncated, corrupt, foreign or of another version."""


_STRINGS = "__strings__"
PACKED_STRINGS = 256  # a config list of this many strings or more goes into two arrays


def _pack_strings(value, arrays):
    """``value`` (a config) with each list of ``PACKED_STRINGS`` strings or more replaced by
    ``{"__strings__": k}``, its strings put in ``arrays`` as UTF-8 bytes and end offsets."""
    if isinstance(value, dict):
        return {k: _pack_strings(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) >= PACKED_STRINGS and all(isinstance(v, str) for v in value):
            k = sum(name.endswith("/utf8") for name in arrays if name.startswith("strings/"))
            encoded = [v.encode("utf-8", "surrogatepass") for v in value]  # as JSON keeps them
            arrays[f"strings/{k}/utf8"] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            arrays[f"strings/{k}/ends"] = np.cumsum([len(b) for b in encoded], dtype=np.int64)
            return {_STRINGS: k}
        return [_pack_strings(v, arrays) for v in value]
    return value


def _unpack_strings(value, arrays, used, path):
    """:func:`_pack_strings`'s inverse; the arrays it takes are added to ``used``."""
    if isinstance(value, dict):
        if _STRINGS in value:
            k = value[_STRINGS]
            utf8, ends = arrays.get(f"strings/{k}/utf8"), arrays.get(f"strings/{k}/ends")
            if (len(value) != 1 or type(k) is not int or utf8 is None or ends is None
                    or utf8.dtype != np.uint8 or ends.dtype != np.int64 or utf8.ndim != 1
                    or ends.ndim != 1 or f"strings/{k}/utf8" in used):
                raise ModelFileError(f"{path!r}: malformed list of strings {value!r:.80}")
            starts = np.concatenate([[0], ends[:-1]])
            if len(ends) and (np.any(ends < starts) or ends[-1] != len(utf8)):
                raise ModelFileError(f"{path!r}: the ends of the strings in 'strings/{k}' do not "
                                     "rise to the length of their bytes")
            used.update((f"strings/{k}/utf8", f"strings/{k}/ends"))
            data = utf8.tobytes()
            try:
                return [data[a:b].decode("utf-8", "surrogatepass")
                        for a, b in zip(starts.tolist(), ends.tolist())]
            except UnicodeDecodeError:
                raise ModelFileError(f"{path!r}: 'strings/{k}' is not UTF-8") from None
        return {key: _unpack_strings(v, arrays, used, path) for key, v in value.items()}
    if isinstance(value, list):
        return [_unpack_strings(v, arrays, used, path) for v in value]
    return value


def write_model_file(path, kind: str, config: dict, arrays: dict[str, np.ndarray]):
    """Write a model file atomically (temporary sibling, fsync, ``os.replace``)."""
    arrays = dict(arrays)
    config = _pack_strings(config, arrays)
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


def _parse_npy(data, where: str, dtype: str, shape: list) -> np.ndarray:
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
    nbytes = math.prod(got_shape) * got_dtype.itemsize  # exact: Python integers
    payload = memoryview(data)[buf.tell():]
    if len(payload) != nbytes:
        raise ModelFileError(f"{where}: holds {len(payload)} bytes of data, expected {nbytes}")
    return np.frombuffer(payload, dtype=got_dtype).reshape(got_shape).copy()


def _unique_keys(pairs):
    """``object_pairs_hook`` for ``json.loads``: a repeated key is an error, not "last wins"."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ModelFileError(f"{HEADER}: duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name):
    """``parse_constant`` for ``json.loads``: the writer never writes NaN or Infinity."""
    raise ModelFileError(f"{HEADER}: holds {name}, which logitlab never writes")


def _check_layout(fh, infos, start_dir, path):
    """Every entry stored plainly, in order, its bytes inside the file and apart from the others.

    ``infos`` is the central directory in its own order. Each entry's extent (local
    header, name, extra field, data) must begin at or after the end of the one before
    and end at or before the central directory, so the entries' bytes add up to at most
    the file's size: no entry can be read twice as part of another (an overlapping
    archive declares ~n**2/2 bytes in n entries).
    """
    start, end = -1, 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise ModelFileError(f"{path!r}: entry {info.filename!r} is not stored plainly")
        if info.flag_bits & 0x09:  # encrypted, or sizes in a trailing data descriptor
            raise ModelFileError(f"{path!r}: entry {info.filename!r} is not stored plainly "
                                 f"(flags {info.flag_bits:#x})")
        if info.header_offset < start:
            raise ModelFileError(f"{path!r}: entry {info.filename!r} is out of order in the "
                                 "central directory")
        if info.header_offset < end:
            raise ModelFileError(f"{path!r}: entry {info.filename!r} overlaps the entry before it")
        start = info.header_offset
        fh.seek(start)
        local = fh.read(_LOCAL.size)
        if len(local) != _LOCAL.size or local[:4] != b"PK\x03\x04":
            raise ModelFileError(f"{path!r}: entry {info.filename!r} has no local header")
        name_len, extra_len = _LOCAL.unpack(local)[-2:]
        end = start + _LOCAL.size + name_len + extra_len + info.compress_size
        if end > start_dir:
            raise ModelFileError(f"{path!r}: entry {info.filename!r} overlaps the central "
                                 "directory")


def read_model_file(path, kinds=None):
    """Read a model file; returns ``(kind, config, arrays)``.

    ``kinds`` restricts the accepted kinds. Raises :class:`ModelFileError`
    naming what is wrong, for any damage to the file. Before any entry is read
    the archive's layout is checked (:func:`_check_layout`) and every entry name
    must be unique, so the bytes read add up to at most the file's size.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"no model file at {path!r}")
    try:
        with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
            infolist = zf.infolist()
            names = set()
            for info in infolist:  # zipfile's own name -> entry dict keeps the last of a pair
                if info.filename in names:
                    raise ModelFileError(f"{path!r}: duplicate entry {info.filename!r}")
                names.add(info.filename)
            if HEADER not in names:
                raise ModelFileError(f"{path!r} is not a logitlab model file (no {HEADER})")
            _check_layout(fh, infolist, zf.start_dir, path)
            infos = {info.filename: info for info in infolist}
            if infos[HEADER].file_size > MAX_HEADER_BYTES:
                raise ModelFileError(f"{path!r}: header larger than {MAX_HEADER_BYTES} bytes")
            try:
                header = json.loads(zf.read(infos[HEADER]).decode("utf-8"),
                                    object_pairs_hook=_unique_keys, parse_constant=_no_constant)
            except ModelFileError as exc:
                raise ModelFileError(f"{path!r}: {exc}") from None
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
                raise ModelFileError(f"{path!r}: the header lists {len(entries)} arrays but the "
                                     f"archive holds {len(infos) - 1} other entries")
            arrays = {}
            for i, entry in enumerate(entries):
                name = f"arrays/{i}.npy"
                if (not isinstance(entry, dict) or name not in infos
                        or entry.get("dtype") not in _ALLOWED_DTYPES
                        or not isinstance(entry.get("shape"), list)
                        or not all(type(d) is int and 0 <= d for d in entry["shape"])
                        or not isinstance(entry.get("name"), str)):
                    raise ModelFileError(f"{path!r}: malformed array entry {i}")
                if entry["name"] in arrays:
                    raise ModelFileError(f"{path!r}: array name {entry['name']!r} appears twice "
                                         "in the header")
                arrays[entry["name"]] = _parse_npy(zf.read(infos[name]), f"{path!r} {name}",
                                                   entry["dtype"], entry["shape"])
        used = set()
        config = _unpack_strings(config, arrays, used, path)
        packed = {name for name in arrays if name.startswith("strings/")}
        if packed - used:
            raise ModelFileError(f"{path!r}: array {sorted(packed - used)[0]!r} is no list of "
                                 "strings the config names")
        arrays = {name: a for name, a in arrays.items() if name not in packed}
    except ModelFileError:
        raise
    except MemoryError:  # pragma: no cover - guarded above by the size checks
        raise
    except Exception as exc:  # any damage: zip structure, CRC, JSON, npy header
        raise ModelFileError(f"{path!r} is corrupt or not a logitlab model file: "
                             f"{type(exc).__name__}: {exc}") from None
    return kind, config, arrays


def check_array(arrays, name, shape, where, *, dtype=None, kind="f", finite=True,
                positive=False, nonnegative=False, label=None):
    """Check one array read from a model file; raise :class:`ModelFileError` naming it.

    ``shape`` is the expected shape; ``dtype`` an exact dtype, else ``kind`` the dtype
    kinds allowed ("f": floating); ``finite``/``positive``/``nonnegative`` the values.
    ``label`` is the entry's name as the file spells it (default ``name``).
    """
    label = name if label is None else label
    if name not in arrays:
        raise ModelFileError(f"{where}: array {label!r} is missing")
    a = arrays[name]
    if tuple(a.shape) != tuple(shape):
        raise ModelFileError(f"{where}: array {label!r} must have shape {tuple(shape)}; the file "
                             f"holds shape {tuple(a.shape)}")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise ModelFileError(f"{where}: array {label!r} must be {np.dtype(dtype).name}; the file "
                             f"holds {a.dtype.name}")
    if dtype is None and a.dtype.kind not in kind:
        raise ModelFileError(f"{where}: array {label!r} must be floating-point; the file holds "
                             f"{a.dtype.name}")
    if finite and not np.isfinite(a).all():
        raise ModelFileError(f"{where}: array {label!r} holds NaN or inf")
    if positive and not (a > 0).all():
        raise ModelFileError(f"{where}: array {label!r} must be positive; it holds "
                             f"{a[~(a > 0)].ravel()[0].item()!r}")
    if nonnegative and (a < 0).any():
        raise ModelFileError(f"{where}: array {label!r} holds negative values")
    return a
