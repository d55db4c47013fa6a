"""Hostile and damaged model files (issue 19): memory proportional to the file, every
declared shape checked against the arrays in the file before anything is built, every
array of an estimator file checked on load, formula-safe class names in prediction CSVs.

The crafted files are made by ``tests/hostile_files.py``; the same files are measured
by ``benchmarks/bench_hostile_files.py`` for docs/reliability.md.
"""

import csv
import io
import json
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner

import hostile_files as hf
from logitlab import ModelFileError, Sequential, load_model
from logitlab.cli._main import cli
from logitlab.estimators import load_estimator
from logitlab.layers import Dense
from logitlab.losses import SparseCategoricalCrossentropy
from logitlab.optimizers import SGD


def budget(size):
    """The loader's promise: peak memory under 64 x the file's size + 4 MiB."""
    return 64 * size + (4 << 20)


def peak_of(fn):
    """``(result or exception, peak bytes traced)`` of ``fn()``."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - returned for the test to judge
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def load_rejected(path, match, loader=load_model):
    """Load ``path``: it must raise ModelFileError matching ``match`` within the budget."""
    size = path.stat().st_size
    out, peak = peak_of(lambda: loader(path))
    if not isinstance(out, ModelFileError) or peak >= budget(size):  # other threads: retry once
        out, peak = peak_of(lambda: loader(path))
    assert isinstance(out, ModelFileError), f"loaded, or raised {out!r}"
    assert str(path) in str(out)
    assert re.search(match, str(out)), str(out)
    assert peak < budget(size), f"peak {peak} bytes for a {size}-byte file"
    return str(out)


def small_model(optimizer="adam", seed=0):
    model = Sequential([Dense(6, "relu"), Dense(3)], seed=seed)
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer=optimizer)
    rng = np.random.default_rng(seed)
    model.fit(rng.normal(size=(40, 4)), rng.integers(0, 3, 40), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def seq_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("seq") / "m.logitlab"
    small_model().save(path)
    load_model(path).predict(np.zeros((2, 4)))  # first-use imports are not the file's
    return path.read_bytes()


# ---- the zip layer ----------------------------------------------------------------

def test_issue19_overlapping_entries_are_rejected(tmp_path):
    """Issue 19: 2,000 entries whose bytes overlap (each one's data wraps all the entries
    after it) loaded and peaked at 2.4 GB; the declared bytes were ~n**2/2 the file's."""
    path = tmp_path / "overlap.logitlab"
    path.write_bytes(hf.overlapping_entries(2000))
    load_rejected(path, "overlap")


def test_entries_out_of_order_or_into_the_central_directory_are_rejected(tmp_path, seq_bytes):
    entries = hf.entries_of(seq_bytes)
    order = list(range(len(entries)))
    order[1], order[2] = order[2], order[1]
    path = tmp_path / "order.logitlab"
    path.write_bytes(hf.write_entries(entries, central_order=order))
    load_rejected(path, "out of order")
    # the last entry declares more bytes than lie before the central directory
    blob = bytearray(hf.write_entries(entries))
    last = blob.rfind(b"PK\x01\x02")
    for at in (last + 20, last + 24):  # compressed and uncompressed size
        blob[at:at + 4] = (int.from_bytes(blob[at:at + 4], "little") + 40).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    load_rejected(path, "overlap|central directory|not stored plainly")


def test_issue19_duplicate_array_entry_is_rejected(tmp_path, seq_bytes):
    """Issue 19: a second ``arrays/0.npy`` passed the "unexpected entries" check because
    entries were kept in a dict (the last one won, silently replacing the weights)."""
    w0 = load_model_bytes(tmp_path, seq_bytes).get_weights()[0]
    path = tmp_path / "dup.logitlab"
    path.write_bytes(hf.duplicate_entry(seq_bytes, "arrays/0.npy", hf.npy_bytes(np.zeros_like(w0))))
    load_rejected(path, "duplicate entry 'arrays/0.npy'")


@pytest.mark.parametrize("first_version", [2, 1])
def test_issue19_duplicate_header_entry_is_rejected(tmp_path, seq_bytes, first_version):
    """Issue 19: two ``logitlab.json`` entries (the first of another version): the dict
    kept the last one and the file loaded."""
    path = tmp_path / "dup.logitlab"
    path.write_bytes(hf.duplicate_header(seq_bytes, first_version))
    load_rejected(path, "duplicate entry 'logitlab.json'")


def test_duplicate_keys_and_array_names_in_the_header_are_rejected(tmp_path, seq_bytes):
    """The same class of bug one level down: JSON objects and the array list are dicts too."""
    entries = dict(hf.entries_of(seq_bytes))
    text = entries["logitlab.json"].decode()
    doubled = text.replace('"version": 1', '"version": 2, "version": 1', 1)
    assert doubled != text
    path = tmp_path / "keys.logitlab"
    path.write_bytes(hf.write_entries([(n, doubled.encode() if n == "logitlab.json" else d)
                                       for n, d in hf.entries_of(seq_bytes)]))
    load_rejected(path, "duplicate key 'version'")

    nan = text.replace('"epoch": 1', '"epoch": NaN', 1)  # the writer never writes NaN
    assert nan != text
    path.write_bytes(hf.write_entries([(n, nan.encode() if n == "logitlab.json" else d)
                                       for n, d in hf.entries_of(seq_bytes)]))
    load_rejected(path, "holds NaN")

    def rename(h):
        h["arrays"][1]["name"] = h["arrays"][0]["name"]
    path.write_bytes(hf.rewrite(seq_bytes, rename))
    load_rejected(path, "array name 'w0' appears twice")


def load_model_bytes(tmp_path, blob):
    path = tmp_path / "valid.logitlab"
    path.write_bytes(blob)
    return load_model(path)


# ---- declared shapes against the arrays in the file -------------------------------

def test_issue19_inflated_input_dim_is_rejected_before_building(tmp_path, seq_bytes):
    """Issue 19: ``input_dim = units = 20000`` in a saved model's JSON made load_model
    allocate 4.6 GB (a 20000 x 20000 kernel) before it reported the mismatch."""
    path = tmp_path / "inflated.logitlab"
    path.write_bytes(hf.inflated_dense(seq_bytes, 20000))
    load_rejected(path, "declares 400,080,003 parameters")


def test_issue19_two_thousand_dense_layers_in_a_small_file_are_rejected(tmp_path, seq_bytes):
    """Issue 19: 2,000 Dense(2000) layers in a ~107 kB file grew past 15 GB."""
    path = tmp_path / "layers.logitlab"
    path.write_bytes(hf.many_dense_layers(seq_bytes, 2000, 2000))
    assert path.stat().st_size < 150_000
    message = load_rejected(path, "declares [0-9,]+ parameters")
    assert "bytes of arrays" in message


@pytest.mark.parametrize("change, match", [
    (lambda h: h["config"]["layers"][1]["config"].update(units=4), "'w2'.*shape"),
    (lambda h: h["config"]["layers"][0]["config"].update(use_bias=False), "'w1'"),
    (lambda h: h["config"].update(input_dim=5), "'w0'.*shape"),
    (lambda h: h["config"].update(input_dim=True), "input_dim"),
    (lambda h: h["config"].update(input_dim=-3), "input_dim"),
    (lambda h: h["config"]["layers"].append({"class_name": "Dense", "config": {"units": 2}}),
     "'w4'"),
    (lambda h: h["arrays"].append(h["arrays"][0] | {"name": "spare"}), "unexpected|entries"),
])
def test_declared_shapes_must_match_the_arrays(tmp_path, seq_bytes, change, match):
    path = tmp_path / "shape.logitlab"
    path.write_bytes(hf.rewrite(seq_bytes, change))
    load_rejected(path, match)


def test_unused_array_is_rejected(tmp_path, seq_bytes):
    """An array the model does not use is bytes the loader would hold for nothing."""
    entries = hf.entries_of(seq_bytes)
    header = hf.header_of(seq_bytes)
    header["arrays"].append({"name": "spare", "dtype": "<f4", "shape": [2]})
    entries = [(n, json.dumps(header).encode() if n == "logitlab.json" else d) for n, d in entries]
    entries.append((f"arrays/{len(header['arrays']) - 1}.npy", hf.npy_bytes(np.zeros(2, "<f4"))))
    path = tmp_path / "spare.logitlab"
    path.write_bytes(hf.write_entries(entries))
    load_rejected(path, "unexpected array 'spare'")


def test_weights_must_be_finite_and_of_the_models_dtype(tmp_path, seq_bytes):
    w = load_model_bytes(tmp_path, seq_bytes).get_weights()
    path = tmp_path / "w.logitlab"
    bad = w[2].copy()
    bad[0, 0] = np.nan
    path.write_bytes(hf.rewrite(seq_bytes, arrays={"w2": bad}))
    load_rejected(path, "'w2'.*NaN or inf")
    path.write_bytes(hf.rewrite(seq_bytes, arrays={"w2": w[2].astype(np.float64)}))
    load_rejected(path, "'w2'.*float32")


# ---- optimizer slots ---------------------------------------------------------------

@pytest.mark.parametrize("optimizer, slot", [("adam", "velocities"),
                                             (SGD(0.1, momentum=0.9), "momentums")])
def test_issue19_optimizer_slots_are_checked_at_load(tmp_path, optimizer, slot):
    """Issue 19: an optimizer slot of the wrong shape or dtype loaded and failed at the
    next ``fit``; it must fail at load, naming the entry."""
    path = tmp_path / "opt.logitlab"
    small_model(optimizer).save(path)
    blob = path.read_bytes()
    name = f"opt/{slot}/0"
    good = dict(zip([a["name"] for a in hf.header_of(blob)["arrays"]], range(99)))
    assert name in good
    total = 4 * 6 + 6 + 6 * 3 + 3
    for bad, match in ((np.zeros(total - 1, np.float32), "shape"),
                       (np.zeros(total, np.float64), "float32"),
                       (np.zeros(total, np.int32), "float32"),
                       (np.full(total, np.inf, np.float32), "NaN or inf")):
        path.write_bytes(hf.rewrite(blob, arrays={name: bad}))
        load_rejected(path, f"'{name}'.*{match}")
    if slot == "velocities":  # running means of squared gradients: never negative
        path.write_bytes(hf.rewrite(blob, arrays={name: np.full(total, -1.0, np.float32)}))
        load_rejected(path, f"'{name}'.*negative")

    def drop(h):
        h["config"]["optimizer_state"]["slots"].pop(slot)
    path.write_bytes(hf.rewrite(blob, drop))
    load_rejected(path, "slot|unexpected")
    # and the model as saved still loads, trains and matches
    path.write_bytes(blob)
    model = load_model(path)
    model.fit(np.zeros((4, 4)), np.zeros(4, int), epochs=1, verbose=0)


# ---- estimator files, through load_estimator and `logitlab predict` -----------------

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "logitlab", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def blobs_csv(tmp_path_factory):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=90, centers=3, n_features=4, random_state=0)
    path = tmp_path_factory.mktemp("data") / "blobs.csv"
    names = np.array(["ant", "bee", "cat"])[y]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "d", "label"])
        w.writerows([[*map(repr, map(float, x)), n] for x, n in zip(X, names)])
    return path


@pytest.fixture(scope="module")
def softmax_file(blobs_csv, tmp_path_factory):
    path = tmp_path_factory.mktemp("sm") / "sm.logitlab"
    res = run_cli("train", blobs_csv, "--target", "label", "-o", path)
    assert res.returncode == 0, res.stderr
    return path


@pytest.fixture(scope="module")
def mlp_file(blobs_csv, tmp_path_factory):
    path = tmp_path_factory.mktemp("mlp") / "mlp.logitlab"
    res = run_cli("train", blobs_csv, "--target", "label", "--model", "mlp", "--hidden", "8",
                  "--epochs", "3", "-o", path)
    assert res.returncode == 0, res.stderr
    return path


def predict_in_process(model, data):
    """``logitlab predict MODEL DATA`` in this process (so tracemalloc sees it)."""
    return CliRunner().invoke(cli, ["predict", str(model), str(data)])


def cli_rejected(model, data, match):
    """`logitlab predict` on a bad model file: one line, exit status 2, small peak.

    Measured on a second call: the first may import modules (which ones depends on what
    the tests before it in this process imported) and tracemalloc counts them too."""
    predict_in_process(model, data)
    res, peak = peak_of(lambda: predict_in_process(model, data))
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert re.search(match, lines[0]), lines[0]
    assert peak < budget(model.stat().st_size), f"peak {peak} bytes"
    return lines[0]


def test_issue19_predict_rejects_inflated_network_with_small_peak(mlp_file, blobs_csv, tmp_path):
    """Issue 19: the 20000-unit edit cost 9.5 GB through `logitlab predict`."""
    assert predict_in_process(mlp_file, blobs_csv).exit_code == 0  # warm up the imports

    def inflate(h):
        h["config"]["network"]["input_dim"] = 20000
        h["config"]["network"]["layers"][0]["config"]["units"] = 20000
    bad = tmp_path / "inflated.logitlab"
    bad.write_bytes(hf.rewrite(mlp_file.read_bytes(), inflate))
    cli_rejected(bad, blobs_csv, "declares|'net/w0'")
    # and the same file in a subprocess: exit status 2, one line, no traceback
    res = run_cli("predict", bad, blobs_csv)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr


SOFTMAX_DAMAGE = {
    "two class names for a three-row coef":
        (lambda h: h["config"].update(classes=h["config"]["classes"][:2]), {}, "'coef'.*shape"),
    "coef of the wrong shape":
        (None, {"coef": np.zeros((3, 5))}, "'coef'.*shape"),
    "intercept of the wrong shape":
        (None, {"intercept": np.zeros(2)}, "'intercept'.*shape"),
    "NaN coefficient":
        (None, {"coef": np.full((3, 4), np.nan)}, "'coef'.*NaN or inf"),
    "inf intercept":
        (None, {"intercept": np.array([0.0, np.inf, 0.0])}, "'intercept'.*NaN or inf"),
    "integer coef":
        (None, {"coef": np.zeros((3, 4), np.int64)}, "'coef'.*float"),
    "mean of the wrong shape":
        (None, {"extra/mean": np.zeros(3)}, "'extra/mean'.*shape"),
    "scale of the wrong shape":
        (None, {"extra/scale": np.ones((4, 1))}, "'extra/scale'.*shape"),
    "zero scale":
        (None, {"extra/scale": np.array([1.0, 0.0, 1.0, 1.0])}, "'extra/scale'.*positive"),
    "NaN mean":
        (None, {"extra/mean": np.array([0.0, np.nan, 0.0, 0.0])}, "'extra/mean'.*NaN or inf"),
    "duplicate class names":
        (lambda h: h["config"].update(classes=["ant", "ant", "cat"]), {}, "classes"),
    "feature count against n_features_in":
        (lambda h: h["config"]["extra"].update(features=["a", "b", "c"]), {}, "features"),
    "n_features_in against coef":
        (lambda h: h["config"].update(n_features_in=5), {}, "'coef'.*shape"),
    "an unknown parameter":
        (lambda h: h["config"]["params"].update(C=-1.0), {}, "parameter|C"),
}


CLI_ONLY = {"mean of the wrong shape", "scale of the wrong shape", "zero scale", "NaN mean",
            "feature count against n_features_in"}
# Hyper-parameters are checked by scikit-learn's constraints when the estimator is loaded to be
# used (or refitted); `logitlab predict` and `evaluate` load a light predictor without
# scikit-learn (issue 20) and never read them.
LOADER_ONLY = {"an unknown parameter"}


@pytest.mark.parametrize("damage", list(SOFTMAX_DAMAGE))
def test_issue19_softmax_file_arrays_are_checked(softmax_file, blobs_csv, tmp_path, damage):
    """Issue 19: inconsistent SoftmaxRegression files gave tracebacks, or exit 0 with every
    row one class at probability 1.0, or NaN predictions with exit 0."""
    change, arrays, match = SOFTMAX_DAMAGE[damage]
    bad = tmp_path / "bad.logitlab"
    bad.write_bytes(hf.rewrite(softmax_file.read_bytes(), change, arrays))
    if damage not in CLI_ONLY:  # the CLI's own entries: load_estimator does not know them
        with pytest.raises(ModelFileError, match=match):
            load_estimator(bad)
    if damage not in LOADER_ONLY:
        cli_rejected(bad, blobs_csv, match)


MLP_DAMAGE = {
    "two class names for a three-output network":
        (lambda h: h["config"].update(classes=h["config"]["classes"][:2]), {}, "outputs"),
    "NaN weight": (None, {"net/w2": np.full((8, 3), np.nan)}, "'net/w2'.*NaN or inf"),
    "network built for other features":
        (lambda h: h["config"].update(n_features_in=5), {}, "features"),
}


@pytest.mark.parametrize("damage", list(MLP_DAMAGE))
def test_issue19_mlp_file_arrays_are_checked(mlp_file, blobs_csv, tmp_path, damage):
    change, arrays, match = MLP_DAMAGE[damage]
    bad = tmp_path / "bad.logitlab"
    bad.write_bytes(hf.rewrite(mlp_file.read_bytes(), change, arrays))
    with pytest.raises(ModelFileError, match=match):
        load_estimator(bad)
    cli_rejected(bad, blobs_csv, match)


def test_long_string_lists_travel_as_arrays_and_are_checked(tmp_path):
    # A config's list of many strings goes into two arrays (its UTF-8 bytes and where each
    # string ends), so that a model of 120000 named features fits the 1 MiB header; what
    # comes back is the config as written. Damaged arrays are a ModelFileError.
    from logitlab._saving import PACKED_STRINGS, read_model_file, write_model_file

    names = ["é" * (i % 3) + f"w{i}" for i in range(120_000)]
    config = {"features": names, "short": ["a", "b"], "nested": [{"n": names[:PACKED_STRINGS]}]}
    write_model_file(tmp_path / "m", "Test", config, {"w": np.zeros(3)})
    kind, back, arrays = read_model_file(tmp_path / "m")
    assert back == config and list(arrays) == ["w"]

    def damaged(change):
        utf8 = np.frombuffer("".join(names[:300]).encode(), dtype=np.uint8)
        ends = np.cumsum([len(n.encode()) for n in names[:300]], dtype=np.int64)
        arrays = {"strings/0/utf8": utf8, "strings/0/ends": ends}
        cfg = {"features": {"__strings__": 0}}
        change(cfg, arrays)
        path = tmp_path / "bad"
        header = {"format": "logitlab-model", "version": 1, "kind": "Test", "config": cfg,
                  "arrays": [{"name": n, "dtype": a.dtype.str, "shape": list(a.shape)}
                             for n, a in arrays.items()]}
        path.write_bytes(hf.write_entries(
            [("logitlab.json", json.dumps(header).encode())]
            + [(f"arrays/{i}.npy", hf.npy_bytes(a)) for i, a in enumerate(arrays.values())]))
        with pytest.raises(ModelFileError):
            read_model_file(path)

    damaged(lambda c, a: a.update({"strings/0/ends": a["strings/0/ends"][::-1].copy()}))
    damaged(lambda c, a: a.update({"strings/0/ends": a["strings/0/ends"] + 1}))
    damaged(lambda c, a: a.update({"strings/0/utf8": np.full(len(a["strings/0/utf8"]), 255,
                                                              dtype=np.uint8)}))
    damaged(lambda c, a: c.update({"features": {"__strings__": 1}}))
    damaged(lambda c, a: c.update({"other": {"__strings__": 0}}))  # one list, named twice
    damaged(lambda c, a: c.update({"features": None}))  # arrays no config names


def test_packed_strings_keep_lone_surrogates_as_json_does(tmp_path):
    from logitlab._saving import read_model_file, write_model_file

    names = [f"f{i}" for i in range(300)] + ["bad\udcff"]
    write_model_file(tmp_path / "m", "Test", {"features": names}, {})
    assert read_model_file(tmp_path / "m")[1]["features"] == names
