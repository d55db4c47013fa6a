"""Issue 23: the command line takes a scipy.sparse ``.npz`` (``save_npz``) and never densifies it.

The labels of such a file come from the same file (an extra array named by
``--target``, as for a dense ``.npz``) or from ``--labels FILE.npy``. A
malformed or hostile file is refused in one line, before any of it is used.
"""

import csv
import io
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from logitlab import MLPClassifier, SoftmaxRegression
from logitlab.cli._data import NPZ_MAX_EXPANSION
from logitlab.estimators import load_estimator, save_estimator

from test_cli_data import invoke, one_line_error
from helpers import cli_in_fresh_process

NAMES = np.array(["ant", "bee", "cat", "dog"])


@pytest.fixture
def text_like(rng):
    """A TF-IDF-like problem: 600 rows, 300 columns, 2 % stored, four text classes."""
    X = sp.random(600, 300, density=0.02, format="csr", random_state=rng,
                  data_rvs=lambda k: rng.uniform(0.1, 1.0, k))
    W = rng.normal(size=(4, 300)) * 3
    y = NAMES[np.argmax(X @ W.T + rng.gumbel(size=(600, 4)), axis=1)]
    return X, y


def _predictions(text):
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    return header, np.array([r[0] for r in body]), np.array([[float(v) for v in r[1:]]
                                                             for r in body])


def _ok(res):
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    return res


def test_train_on_a_sparse_npz_predicts_as_the_in_memory_estimator(tmp_path, text_like,
                                                                   monkeypatch):
    X, y = text_like
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "y.npy", y)
    densified = []
    for cls in (sp.csr_matrix, sp.csc_matrix):
        for name in ("toarray", "todense"):
            orig = getattr(cls, name)
            monkeypatch.setattr(cls, name, lambda self, *a, _o=orig, **k:
                                densified.append(1) or _o(self, *a, **k))
    _ok(invoke("train", tmp_path / "X.npz", "--labels", tmp_path / "y.npy",
               "--validation-split", "0", "-o", tmp_path / "m.ll"))
    res = _ok(invoke("predict", tmp_path / "m.ll", tmp_path / "X.npz", "--proba"))
    assert densified == []
    monkeypatch.undo()
    # the reference: scikit-learn-style scaling of the dense matrix (centred, and not),
    # fitted in memory; the CLI scales the sparse one without centring
    Xd = X.toarray()
    std = Xd.std(axis=0)
    std[std == 0] = 1.0
    header, pred, proba = _predictions(res.stdout)
    assert header == ["prediction"] + [f"proba_{c}" for c in NAMES]
    for Xs in (Xd / std, (Xd - Xd.mean(axis=0)) / std):
        ref = SoftmaxRegression(C=1.0).fit(Xs, y)
        np.testing.assert_array_equal(pred, ref.predict(Xs))
        np.testing.assert_allclose(proba, ref.predict_proba(Xs), rtol=1e-5, atol=1e-7)
    est, extra, arrays = load_estimator(tmp_path / "m.ll")
    np.testing.assert_allclose(arrays["scale"], std, rtol=1e-12)
    assert not arrays["mean"].any() and extra["target"] is None
    # evaluate takes the same labels file
    res = _ok(invoke("evaluate", tmp_path / "m.ll", tmp_path / "X.npz",
                     "--labels", tmp_path / "y.npy"))
    accuracy = float(res.stdout.split("accuracy")[1].split()[1])
    assert accuracy == pytest.approx(np.mean(pred == y), abs=1e-4)


def test_a_float32_npz_trains_a_float32_model_as_the_api_does(tmp_path, text_like):
    # a stranger's review: the CLI's scaling turned float32 sparse input into float64
    X, y = text_like
    sp.save_npz(tmp_path / "X32.npz", X.astype(np.float32))
    sp.save_npz(tmp_path / "X64.npz", X)
    np.save(tmp_path / "y.npy", y)
    for name in ("X32", "X64"):
        _ok(invoke("train", tmp_path / f"{name}.npz", "--labels", tmp_path / "y.npy",
                   "--validation-split", "0", "-o", tmp_path / f"{name}.ll"))
    m32, _, _ = load_estimator(tmp_path / "X32.ll")
    m64, _, _ = load_estimator(tmp_path / "X64.ll")
    assert m32.coef_.dtype == np.float32 and m64.coef_.dtype == np.float64
    np.testing.assert_allclose(m32.coef_, m64.coef_, atol=1e-3 * np.abs(m64.coef_).max())
    p32 = _predictions(_ok(invoke("predict", tmp_path / "X32.ll", tmp_path / "X32.npz",
                                  "--proba")).stdout)
    p64 = _predictions(_ok(invoke("predict", tmp_path / "X64.ll", tmp_path / "X64.npz",
                                  "--proba")).stdout)
    np.testing.assert_allclose(p32[2], p64[2], atol=2e-3)  # float32 fits stop at their noise


def test_labels_in_the_same_file_and_csc_give_the_same_model(tmp_path, text_like):
    X, y = text_like
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "y.npy", y)
    Xc = X.tocsc()
    np.savez(tmp_path / "Xy.npz", data=Xc.data, indices=Xc.indices, indptr=Xc.indptr,
             format="csc", shape=np.array(Xc.shape), topic=y)  # the save_npz layout, plus labels
    _ok(invoke("train", tmp_path / "X.npz", "--labels", tmp_path / "y.npy", "-o",
               tmp_path / "a.ll"))
    _ok(invoke("train", tmp_path / "Xy.npz", "--target", "topic", "-o", tmp_path / "b.ll"))
    a, _, _ = load_estimator(tmp_path / "a.ll")
    b, extra, _ = load_estimator(tmp_path / "b.ll")
    assert extra["target"] == "topic"
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-9, atol=1e-12)
    res = _ok(invoke("evaluate", tmp_path / "b.ll", tmp_path / "Xy.npz"))  # labels in the file
    assert "confusion matrix" in res.stdout


def test_sparse_input_to_a_model_trained_on_dense_data(tmp_path, text_like):
    # the model centres its features; the sparse file's centring goes into the intercepts
    X, y = text_like
    np.savez(tmp_path / "dense.npz", X=X.toarray(), y=y)
    sp.save_npz(tmp_path / "X.npz", X)
    _ok(invoke("train", tmp_path / "dense.npz", "--target", "y", "--calibrate",
               "-o", tmp_path / "m.ll"))
    _, extra, arrays = load_estimator(tmp_path / "m.ll")
    assert arrays["mean"].any() and "temperature" in arrays
    dense = _ok(invoke("predict", tmp_path / "m.ll", tmp_path / "dense.npz", "--proba"))
    sparse = _ok(invoke("predict", tmp_path / "m.ll", tmp_path / "X.npz", "--proba"))
    _, pred_d, proba_d = _predictions(dense.stdout)
    _, pred_s, proba_s = _predictions(sparse.stdout)
    np.testing.assert_array_equal(pred_s, pred_d)
    np.testing.assert_allclose(proba_s, proba_d, rtol=1e-9, atol=1e-12)
    np.save(tmp_path / "y.npy", y)
    res_d = _ok(invoke("evaluate", tmp_path / "m.ll", tmp_path / "dense.npz"))
    res_s = _ok(invoke("evaluate", tmp_path / "m.ll", tmp_path / "X.npz",
                       "--labels", tmp_path / "y.npy"))
    assert res_d.stdout.split("log loss")[1].split()[1] == \
        res_s.stdout.split("log loss")[1].split()[1]


def test_a_network_refuses_sparse_input_in_one_line(tmp_path, text_like):
    X, y = text_like
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "y.npy", y)
    one_line_error(invoke("train", tmp_path / "X.npz", "--labels", tmp_path / "y.npy",
                          "--model", "mlp", "-o", tmp_path / "m.ll"),
                   "X.npz holds a sparse matrix", "MLPClassifier takes dense features only")
    mlp = MLPClassifier(hidden_layer_sizes=(4,), epochs=2, random_state=0).fit(X.toarray(), y)
    names = [f"x{i}" for i in range(300)]
    save_estimator(mlp, tmp_path / "mlp.ll", extra={"features": names, "target": "y",
                                                    "multilabel": None},
                   extra_arrays={"mean": np.zeros(300), "scale": np.ones(300)})
    one_line_error(invoke("predict", tmp_path / "mlp.ll", tmp_path / "X.npz"),
                   "X.npz holds a sparse matrix", "MLPClassifier takes dense features only")
    one_line_error(invoke("train", tmp_path / "X.npz", "--labels", tmp_path / "y.npy",
                          "--engine", "dask", "-o", tmp_path / "m.ll"), "--engine local")


def _save_parts(path, X, **change):
    parts = {"data": X.data, "indices": X.indices, "indptr": X.indptr, "format": X.format,
             "shape": np.array(X.shape)}
    parts.update(change)
    np.savez(path, **parts)


def _lying_header(path, X):
    """A save_npz file whose 'data' header declares 10**9 values (8 GB) and holds 16 bytes."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, a in (("indices", X.indices), ("indptr", X.indptr),
                        ("format", np.array(X.format)), ("shape", np.array(X.shape))):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            zf.writestr(f"{name}.npy", buf.getvalue())
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)})
        zf.writestr("data.npy", buf.getvalue() + b"\0" * 16)


def _bomb(path):
    """A save_npz-like file whose 'data' is 40 MB of zeros, compressed to about 40 kB."""
    np.savez_compressed(path, data=np.zeros(5_000_000), indices=np.zeros(1, np.int32),
                        indptr=np.array([0, 1]), format="csr", shape=np.array([1, 1]))


@pytest.mark.parametrize("case, words", [
    ("decreasing indptr", ["'indptr' in", "decreases at position 3"]),
    ("indptr not ending at nnz", ["'indptr' in", "must run from 0 to"]),
    ("short indptr", ["'indptr' in", "must be 11 integers"]),
    ("index out of range", ["'indices' in", "must lie in [0, 8)", "holds 8"]),
    ("negative index", ["'indices' in", "holds -1"]),
    ("bad shape", ["'shape' in", "two positive integers"]),
    ("coo", ["a 'coo' sparse matrix", "CSR or CSC"]),
    ("pickled object array", ["'data' in", "array of Python objects"]),
    ("nan value", ["'data' in", "holds nan"]),
    ("missing indices", ["not its 'indices'"]),
    ("lying header", ["'data' in", "declares float64 (1000000000,)"]),
    ("decompression bomb", ["over 100 times the file's size"]),
    ("not an npz", ["is not a readable .npz file"]),
    ("npy named npz", ["is a single .npy array, not an .npz archive"]),
])
def test_malformed_sparse_npz_is_refused_in_one_line(tmp_path, case, words):
    X = sp.random(10, 8, density=0.3, format="csr", random_state=0)
    X.data[:] = 1.0
    path = tmp_path / "bad.npz"
    ptr = X.indptr.copy()
    if case == "decreasing indptr":
        ptr[3] = ptr[2] - 1 if ptr[2] > 0 else 0
        ptr[2] = ptr[3] + 1
        _save_parts(path, X, indptr=ptr)
    elif case == "indptr not ending at nnz":
        ptr[-1] -= 1
        _save_parts(path, X, indptr=ptr)
    elif case == "short indptr":
        _save_parts(path, X, indptr=ptr[:-1])
    elif case in ("index out of range", "negative index"):
        idx = X.indices.copy()
        idx[4] = 8 if case == "index out of range" else -1
        _save_parts(path, X, indices=idx)
    elif case == "bad shape":
        _save_parts(path, X, shape=np.array([10, 8, 1]))
    elif case == "coo":
        sp.save_npz(path, X.tocoo())
    elif case == "pickled object array":
        _save_parts(path, X, data=np.array([1.0] * X.nnz, dtype=object))
    elif case == "nan value":
        data = X.data.copy()
        data[2] = np.nan
        _save_parts(path, X, data=data)
    elif case == "missing indices":
        np.savez(path, data=X.data, indptr=X.indptr, format="csr", shape=np.array(X.shape))
    elif case == "lying header":
        _lying_header(path, X)
    elif case == "decompression bomb":
        _bomb(path)
    elif case == "npy named npz":
        with open(path, "wb") as fh:
            np.save(fh, X.toarray())
    else:
        path.write_bytes(b"\x80\x04K\x01.")  # a pickle, named .npz
    np.save(tmp_path / "y.npy", np.arange(10) % 2)
    for args in (["train", path, "--labels", tmp_path / "y.npy", "-o", tmp_path / "m.ll"],
                 ["train", path, "--target", "y", "-o", tmp_path / "m.ll"]):
        err = one_line_error(invoke(*args), *words)
        assert str(path) in err
    assert not (tmp_path / "m.ll").exists()


@pytest.mark.parametrize("case, words", [
    ("wrong length", ["must be a 1-D array of 600 values"]),
    ("pickled", ["holds Python objects", "nothing is unpickled"]),
    ("not npy", ["expected a .npy file of labels"]),
    ("continuous", ["they look continuous"]),
])
def test_bad_labels_file_is_refused_in_one_line(tmp_path, text_like, case, words):
    X, y = text_like
    sp.save_npz(tmp_path / "X.npz", X)
    labels = tmp_path / ("y.txt" if case == "not npy" else "y.npy")
    if case == "wrong length":
        np.save(labels, y[:-1])
    elif case == "pickled":
        np.save(labels, np.array(list(y), dtype=object), allow_pickle=True)
    elif case == "continuous":
        np.save(labels, np.linspace(0, 1, 600))
    else:
        labels.write_text("\n".join(y))
    one_line_error(invoke("train", tmp_path / "X.npz", "--labels", labels, "-o",
                          tmp_path / "m.ll"), *words)


def test_light_predictor_takes_sparse_x_without_sklearn(tmp_path, text_like):
    X, y = text_like
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "y.npy", y)
    est = SoftmaxRegression().fit(X, y)
    save_estimator(est, tmp_path / "m.ll", extra={"features": [f"x{i}" for i in range(300)],
                                                  "target": None, "multilabel": None},
                   extra_arrays={"mean": np.zeros(300), "scale": np.ones(300)})
    light, _, _ = load_estimator(tmp_path / "m.ll", predict_only=True)
    for Xin in (X, X.tocsc()):
        np.testing.assert_array_equal(light.predict(Xin), est.predict(X))
        np.testing.assert_allclose(light.predict_proba(Xin), est.predict_proba(X), rtol=1e-12)
    with pytest.raises(ValueError, match=r"`X` must have shape \(n_samples, 300\); got \(600, 5\)"):
        light.predict(X[:, :5])
    model, data, labels = str(tmp_path / "m.ll"), str(tmp_path / "X.npz"), str(tmp_path / "y.npy")
    res = cli_in_fresh_process([["predict", model, data],
                                ["evaluate", model, data, "--labels", labels]], tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "prediction" and "confusion matrix" in res.stdout
    np.testing.assert_array_equal(lines[1:601], est.predict(X))
    assert lines[-1] == "HEAVY []"


def test_expansion_limit_is_generous_for_real_sparse_data(tmp_path):
    # a binary bag-of-words matrix, save_npz's default compression: far under the limit
    rng = np.random.default_rng(1)  # 0.2 % of the entries (sp.random drew them in 9 s)
    rows, cols = rng.integers(0, 5000, 200_000), rng.integers(0, 20000, 200_000)
    X = sp.csr_matrix((np.ones(200_000), (rows, cols)), shape=(5000, 20000))
    X.data[:] = 1.0  # a repeated entry was summed
    sp.save_npz(tmp_path / "X.npz", X)
    size = (tmp_path / "X.npz").stat().st_size
    with zipfile.ZipFile(tmp_path / "X.npz") as zf:
        expanded = sum(i.file_size for i in zf.infolist())
    assert expanded < NPZ_MAX_EXPANSION * size / 5


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_predict_on_an_npz_without_the_labels_array(tmp_path, text_like, kind):
    # found here: `predict` read an .npz without the model's label array as an error
    # ("no array 'y'"), where a CSV without the label column is read without labels
    X, y = text_like
    np.savez(tmp_path / "train.npz", X=X.toarray(), y=y)
    if kind == "dense":
        np.savez(tmp_path / "new.npz", X=X.toarray())
    else:
        sp.save_npz(tmp_path / "new.npz", X)
    _ok(invoke("train", tmp_path / "train.npz", "--target", "y", "-o", tmp_path / "m.ll"))
    res = _ok(invoke("predict", tmp_path / "m.ll", tmp_path / "new.npz"))
    assert res.stdout.splitlines()[0] == "prediction" and len(res.stdout.splitlines()) == 601
    one_line_error(invoke("evaluate", tmp_path / "m.ll", tmp_path / "new.npz"), "no array 'y'")


def test_a_binary_file_given_as_csv_is_one_line(tmp_path, text_like):
    # found here: `train y.npy` (the labels file given as the data) was a UnicodeDecodeError
    # traceback from the CSV reader
    _, y = text_like
    np.save(tmp_path / "y.npy", y)
    one_line_error(invoke("train", tmp_path / "y.npy", "--target", "y", "-o", tmp_path / "m.ll"),
                   "y.npy is not a CSV text file", "--labels")


def test_target_and_labels_together_are_refused(tmp_path, text_like):
    # found by review: with both, train read the --target column as a feature (a CSV) or
    # ignored it (an .npz) and trained without a word; evaluate likewise
    X, y = text_like
    np.save(tmp_path / "y.npy", y)
    with open(tmp_path / "d.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "t"])
        w.writerows([[float(r[0]), float(r[1]), i % 2] for i, r in enumerate(X[:, :2].toarray())])
    np.savez(tmp_path / "d.npz", X=X.toarray(), y=y)
    for data, target in ((tmp_path / "d.csv", "t"), (tmp_path / "d.npz", "y")):
        one_line_error(invoke("train", data, "--target", target, "--labels", tmp_path / "y.npy",
                              "-o", tmp_path / "m.ll"), "not both")
        assert not (tmp_path / "m.ll").exists()
    _ok(invoke("train", tmp_path / "d.npz", "--target", "y", "-o", tmp_path / "m.ll"))
    one_line_error(invoke("evaluate", tmp_path / "m.ll", tmp_path / "d.npz", "--target", "y",
                          "--labels", tmp_path / "y.npy"), "not both")


def test_unseen_label_in_a_labels_file_names_that_file(tmp_path, text_like):
    # found by review: the error named "the column 'labels' of X.npz", not the labels file
    X, y = text_like
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "y.npy", y)
    _ok(invoke("train", tmp_path / "X.npz", "--labels", tmp_path / "y.npy", "-o", tmp_path / "m.ll"))
    unseen = y.astype("U10")
    unseen[3] = "zebra"
    np.save(tmp_path / "unseen.npy", unseen)
    line = one_line_error(invoke("evaluate", tmp_path / "m.ll", tmp_path / "X.npz", "--labels",
                                 tmp_path / "unseen.npy"), "unseen.npy", "'zebra'")
    assert "X.npz" not in line
    with open(tmp_path / "d.csv", "w", newline="") as fh:  # a CSV's column is still named
        w = csv.writer(fh)
        w.writerow(["a", "b", "t"])
        w.writerows([[1.0, 2.0, "x"], [2.0, 1.0, "y"], [1.5, 1.0, "x"], [0.5, 2.5, "y"]] * 3)
    _ok(invoke("train", tmp_path / "d.csv", "--target", "t", "-o", tmp_path / "c.ll"))
    with open(tmp_path / "e.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["a", "b", "t"], [1.0, 2.0, "w"]])
    one_line_error(invoke("evaluate", tmp_path / "c.ll", tmp_path / "e.csv"),
                   "the column 't' of", "e.csv", "'w'")


def test_a_model_of_many_features_is_saved_and_predicts(tmp_path):
    # A stranger's review: 120000 columns made 1.2 MB of generated feature names in the
    # model file's JSON header (capped at 1 MiB): the model trained, then was not saved.
    # Long lists of strings now travel as two arrays (_saving._pack_strings).
    X = sp.random(300, 120_000, density=0.002, random_state=0, format="csr")
    y = np.arange(300) % 3
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "m.ll"
    _ok(invoke("train", tmp_path / "X.npz", "--labels", tmp_path / "y.npy", "-o", out))
    est, extra, _ = load_estimator(out)
    assert extra["features"] == [f"x{i}" for i in range(120_000)]
    _ok(invoke("predict", out, tmp_path / "X.npz", "-o", tmp_path / "p.csv"))


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_a_declared_shape_far_beyond_the_stored_values_is_refused(tmp_path, fmt):
    # A few-kB file declaring 10**12 columns: the fit took 24 GB and was killed.
    S = sp.random(100, 20, density=0.2, random_state=0, format="csr")
    S = S if fmt == "csr" else S.T.tocsc()  # CSC: 20 x 100 declared as 10**12 rows
    shape = (100, 10**12) if fmt == "csr" else (10**12, 100)
    np.savez(tmp_path / "X.npz", data=S.data, indices=S.indices, indptr=S.indptr,
             shape=np.array(shape), format=np.array(fmt.encode()))
    np.save(tmp_path / "y.npy", np.arange(100) % 3)
    what = "columns" if fmt == "csr" else "rows"
    one_line_error(invoke("train", tmp_path / "X.npz", "--labels", tmp_path / "y.npy",
                          "-o", tmp_path / "m.ll"),
                   f"declares 1000000000000 {what} for 400 stored values", "at most 16777216")
