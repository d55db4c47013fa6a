"""Crafted model files for the hostile-file tests and benchmarks/bench_hostile_files.py.

Each function takes the bytes of a valid model file (or builds one from
nothing) and returns the bytes of a file an attacker (or an accident) could
produce. The zip records are written here by hand, with ``struct``, so that
layouts ``zipfile`` refuses to write (overlapping entries, duplicate names,
entries out of order) can be made.
"""

import io
import json
import struct
import zipfile
import zlib

import numpy as np

LOCAL = struct.Struct("<4s2B4HL2L2H")      # local file header, 30 bytes + name
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory record, 46 bytes + name
END = struct.Struct("<4s4H2LH")            # end of central directory, 22 bytes


def _local(name, data):
    n = name.encode()
    return LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0x21, zlib.crc32(data), len(data),
                      len(data), len(n), 0) + n


def _central(name, data, offset):
    n = name.encode()
    return CENTRAL.pack(b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0x21, zlib.crc32(data), len(data),
                        len(data), len(n), 0, 0, 0, 0, 0o600 << 16, offset) + n


def _end(count, cd_size, cd_offset):
    return END.pack(b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, 0)


def entries_of(blob):
    """``[(name, data), ...]`` of a valid archive, in order."""
    zf = zipfile.ZipFile(io.BytesIO(blob))
    return [(info.filename, zf.read(info)) for info in zf.infolist()]


def write_entries(entries, central_order=None):
    """A plain archive of ``entries`` written in order; duplicate names are kept. The
    central directory lists them in ``central_order`` (default: the same order)."""
    body, records = b"", []
    for name, data in entries:
        records.append(_central(name, data, len(body)))
        body += _local(name, data) + data
    central = b"".join(records[i] for i in (central_order or range(len(records))))
    return body + central + _end(len(entries), len(central), len(body))


def npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def rewrite(blob, change_header=None, arrays=None):
    """``blob`` with its JSON header changed by ``change_header(header)`` and the arrays
    named in ``arrays`` (model names such as ``"w0"`` or ``"coef"``) replaced; the JSON's
    dtype and shape entries follow the new arrays."""
    entries = entries_of(blob)
    header = json.loads(dict(entries)["logitlab.json"])
    arrays = dict(arrays or {})
    index = {entry["name"]: i for i, entry in enumerate(header["arrays"])}
    out = dict(entries)
    for name, array in arrays.items():
        array = np.asarray(array)
        i = index[name]
        header["arrays"][i].update(dtype=array.dtype.str, shape=list(array.shape))
        out[f"arrays/{i}.npy"] = npy_bytes(array)
    if change_header is not None:
        change_header(header)
    out["logitlab.json"] = json.dumps(header).encode()
    return write_entries([(name, out[name]) for name, _ in entries])


def header_of(blob):
    return json.loads(dict(entries_of(blob))["logitlab.json"])


def _npy_header(dtype, shape):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def overlapping_entries(n=2000, config=None):
    """The issue's overlapping zip: entry i's bytes are its own ``.npy`` header followed
    by the whole of entries i+1, ..., so n entries declare about n**2 / 2 times the bytes
    that the file holds. Every entry's CRC and ``.npy`` header are right, and the JSON
    declares each array with the shape its ``.npy`` header gives."""
    tail, pieces = b"", []
    for i in reversed(range(n)):  # from the last entry back: each one's data wraps the rest
        name = f"arrays/{i}.npy"
        header = _npy_header("|u1", (len(tail),))
        data = header + tail
        local = _local(name, data)
        pieces.append((name, data, len(local) + len(header), len(tail)))
        tail = local + data
    pieces.reverse()
    arrays = [{"name": f"x{i}", "dtype": "|u1", "shape": [length]}
              for i, (_, _, _, length) in enumerate(pieces)]
    head = json.dumps({"format": "logitlab-model", "version": 1, "kind": "Sequential",
                       "config": config or {"layers": [], "input_dim": None},
                       "arrays": arrays}).encode()
    body = _local("logitlab.json", head) + head
    central = _central("logitlab.json", head, 0)
    offset = len(body)
    for name, data, step, _ in pieces:
        central += _central(name, data, offset)
        offset += step
    body += tail
    return body + central + _end(n + 1, len(central), len(body))


def duplicate_entry(blob, name, data=None):
    """``blob`` with a second entry called ``name`` (holding ``data``, or a copy) appended."""
    entries = entries_of(blob)
    extra = data if data is not None else dict(entries)[name]
    return write_entries(entries + [(name, extra)])


def duplicate_header(blob, first_version=2):
    """Two ``logitlab.json`` entries: the first of format version ``first_version``, then
    the file's own (version 1), which a reader keeping entries in a dict would use."""
    entries = entries_of(blob)
    header = json.loads(dict(entries)["logitlab.json"])
    header["version"] = first_version
    return write_entries([("logitlab.json", json.dumps(header).encode())] + entries)


def inflated_dense(blob, units=20000):
    """A saved Sequential's JSON edited to ``input_dim = units`` of the first Dense layer
    (the arrays are left as they were)."""
    def change(h):
        h["config"]["input_dim"] = units
        h["config"]["layers"][0]["config"]["units"] = units
    return rewrite(blob, change)


def many_dense_layers(blob, layers=2000, units=2000):
    """A saved Sequential's JSON edited to ``layers`` Dense(``units``) layers (short configs,
    as a person editing the file would write them); the arrays are left as they were."""
    def change(h):
        h["config"]["layers"] = [{"class_name": "Dense", "config": {"units": units}}] * layers
    return rewrite(blob, change)


def swallowing_entry(blob, i, k):
    """``blob`` laid out again with entry ``i``'s data stretched over the next ``k`` entries
    (their headers and data become part of it; its CRC is right), the central directory
    still listing every entry where it lies: entries that overlap."""
    entries = entries_of(blob)
    k = max(1, min(k, len(entries) - 1 - i))
    starts, body = [], b""
    for name, data in entries:
        starts.append(len(body))
        body += _local(name, data) + data
    name_i = entries[i][0]
    data_from = starts[i] + LOCAL.size + len(name_i.encode())
    data_to = starts[i + k + 1] if i + k + 1 < len(entries) else len(body)
    stretched = body[data_from:data_to]
    # entry i's header now declares the stretched size; the bytes after it keep their place
    body = body[:starts[i]] + _local(name_i, stretched) + body[data_from:]
    central = b"".join(_central(n, stretched if j == i else d, starts[j])
                       for j, (n, d) in enumerate(entries))
    return body + central + _end(len(entries), len(central), len(body))
