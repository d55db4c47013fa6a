"""`logitlab predict` and `evaluate` without scikit-learn or matplotlib (issue 20).

Loading a model for prediction gives a light object whose predictions must be the
estimator's own; the CLI's NumPy metrics must be scikit-learn's.
"""


import numpy as np
import pytest
import sklearn.metrics as skm
from sklearn.datasets import load_iris

from logitlab import MLPClassifier, SoftmaxRegression
from logitlab.cli import _metrics
from logitlab.estimators import load_estimator, save_estimator

from test_cli import write_csv
from helpers import cli_in_fresh_process


def _fitted(kind, n_classes, rng):
    X = rng.normal(size=(120, 4))
    y = np.argmax(X[:, :n_classes] + 0.5 * rng.normal(size=(120, n_classes)), axis=1)
    if kind == "multilabel":
        Y = (X[:, :3] > 0).astype(int)
        return MLPClassifier(hidden_layer_sizes=(8,), epochs=3, random_state=0).fit(X, Y), X
    labels = np.array(["ant", "bee", "cat", "dog"])[y]
    if kind == "softmax":
        return SoftmaxRegression().fit(X, labels), X
    return MLPClassifier(hidden_layer_sizes=(8,), epochs=3, random_state=0).fit(X, labels), X


@pytest.mark.parametrize("kind, n_classes", [("softmax", 2), ("softmax", 4), ("mlp", 2),
                                             ("mlp", 4), ("multilabel", 3)])
def test_predict_only_load_predicts_as_the_estimator(kind, n_classes, rng, tmp_path):
    est, X = _fitted(kind, n_classes, rng)
    path = tmp_path / "m.logitlab"
    save_estimator(est, path)
    full, _, _ = load_estimator(path)
    light, _, _ = load_estimator(path, predict_only=True)
    np.testing.assert_array_equal(light.predict(X), est.predict(X))
    np.testing.assert_array_equal(light.predict(X), full.predict(X))
    np.testing.assert_allclose(light.predict_proba(X), est.predict_proba(X), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(light.classes_, est.classes_)
    with pytest.raises(ValueError, match=r"`X` must have shape \(n_samples, 4\); got \(3, 5\)"):
        light.predict(np.zeros((3, 5)))


def test_predict_and_evaluate_import_neither_sklearn_nor_matplotlib(tmp_path):
    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    species = iris.target_names[iris.target]
    data = write_csv(tmp_path / "iris.csv", names + ["species"],
                     [list(x) + [s] for x, s in zip(iris.data, species)])
    mean, scale = iris.data.mean(axis=0), iris.data.std(axis=0)
    X = (iris.data - mean) / scale
    extra = {"features": names, "target": "species", "multilabel": None}  # as `train` writes
    for est in (SoftmaxRegression().fit(X, species),
                MLPClassifier(hidden_layer_sizes=(8,), epochs=3, random_state=0).fit(X, species)):
        path = tmp_path / "model.logitlab"
        save_estimator(est, path, extra=extra, extra_arrays={"mean": mean, "scale": scale})
        res = cli_in_fresh_process([["predict", path, data, "--proba"],
                                    ["evaluate", path, data]], tmp_path)
        assert res.returncode == 0, res.stderr
        assert "proba_setosa" in res.stdout and "confusion matrix" in res.stdout  # it ran both
        assert res.stdout.strip().splitlines()[-1] == "HEAVY []", type(est).__name__


def test_cli_metrics_match_sklearn(rng):
    labels = np.array(["ant", "bee", "cat", "dog"])
    y = labels[rng.integers(0, 4, 300)]
    pred = np.where(rng.random(300) < 0.7, y, labels[rng.integers(0, 3, 300)])  # never "dog"
    proba = rng.dirichlet(np.ones(4), 300)
    proba[0] = [1.0, 0.0, 0.0, 0.0]  # a zero probability: clipped, as scikit-learn does
    assert _metrics.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
    assert _metrics.log_loss(y, proba, labels) == pytest.approx(
        skm.log_loss(y, proba, labels=labels), rel=1e-12)
    np.testing.assert_array_equal(_metrics.confusion_matrix(y, pred, labels),
                                  skm.confusion_matrix(y, pred, labels=labels))
    p, r, _, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    for ours, theirs in zip(_metrics.precision_recall_support(y, pred, labels), (p, r, s)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-15)
    Y = rng.integers(0, 2, (200, 3))
    P = np.where(rng.random((200, 3)) < 0.8, Y, 1 - Y)
    P[:, 2] = 0  # a label never predicted: precision 0
    assert _metrics.accuracy(Y, P) == pytest.approx(skm.accuracy_score(Y, P), abs=1e-15)
    assert _metrics.hamming_loss(Y, P) == pytest.approx(skm.hamming_loss(Y, P), abs=1e-15)
    p, r, _, s = skm.precision_recall_fscore_support(Y, P, zero_division=0)
    for ours, theirs in zip(_metrics.precision_recall_support(Y, P), (p, r, s)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-15)
    with pytest.raises(ValueError, match="`y_true` holds the label 'eel'"):
        _metrics.log_loss(np.array(["eel"]), proba[:1], labels)


def test_predict_only_checks_x_as_the_estimator_does(tmp_path):
    # A stranger's review: the light object took reordered DataFrame columns (accuracy 0.33
    # against 0.97), NaN rows (class 0) and strings (converted) in silence.
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True)
    df = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    est = SoftmaxRegression().fit(df, y)
    save_estimator(est, tmp_path / "m.logitlab")
    light = load_estimator(tmp_path / "m.logitlab", predict_only=True)[0]
    np.testing.assert_array_equal(light.predict(df), est.predict(df))
    for load in (lambda: est, lambda: light):  # the same errors as the estimator's own
        with pytest.raises(ValueError, match="feature names"):
            load().predict(df[["pw", "pl", "sw", "sl"]])
        with pytest.raises(ValueError, match="NaN|nan"):
            load().predict(np.full((1, 4), np.nan))
    with pytest.raises(TypeError, match="`X` must hold numbers"):
        light.predict([["1", "2", "3", "4"]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        light.predict(X[:2])


def test_predict_only_cv_estimator_is_linear(tmp_path):
    # It was taken for an MLPClassifier: sparse X refused, no decision_function.
    sp = pytest.importorskip("scipy.sparse")
    from logitlab import SoftmaxRegressionCV

    X, y = load_iris(return_X_y=True)
    est = SoftmaxRegressionCV(Cs=[0.1, 1.0], cv=3).fit(X, y)
    save_estimator(est, tmp_path / "m.logitlab")
    light = load_estimator(tmp_path / "m.logitlab", predict_only=True)[0]
    np.testing.assert_array_equal(light.predict(sp.csr_matrix(X)), est.predict(X))
    np.testing.assert_allclose(light.decision_function(X), est.decision_function(X), rtol=1e-12)


@pytest.mark.parametrize("labels", [
    np.array([0, 2**64 - 2, 2**64 - 1], dtype=np.uint64),  # merged as float64 before
    np.array([-(2**62), 1, 2**62 + 1], dtype=np.int64),
    np.array([0, 1, 2], dtype=np.int32), np.array([0, 1, 2], dtype=np.uint8),
    np.array(["a", "b", "c"], dtype=object), np.array(["a", "bb", "ccc"]),
    np.array([0.0, 1.0, 2.0]), np.array([False, True, True]),
])
@pytest.mark.parametrize("predict_only", [False, True])
def test_saved_classes_keep_their_values_and_dtype(labels, predict_only, tmp_path):
    X, y = load_iris(return_X_y=True)
    est = SoftmaxRegression().fit(X, labels[y])
    save_estimator(est, tmp_path / "m.logitlab")
    back = load_estimator(tmp_path / "m.logitlab", predict_only=predict_only)[0]
    assert back.classes_.dtype == est.classes_.dtype
    assert back.classes_.tolist() == est.classes_.tolist()
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    assert back.predict(X).dtype == est.predict(X).dtype


def test_predict_only_takes_a_dataframe_of_mixed_columns_and_refuses_wide_class_dtypes(tmp_path):
    pd = pytest.importorskip("pandas")
    import json
    import zipfile

    import hostile_files as hf

    X, y = load_iris(return_X_y=True)
    df = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    df["sl"] = df["sl"].astype("Float64")  # pandas' nullable floats: an object array
    df["sw"] = df["sw"] > 3  # booleans
    est = SoftmaxRegression().fit(df, np.array(["a", "b", "c"])[y])
    save_estimator(est, tmp_path / "m.logitlab")
    light = load_estimator(tmp_path / "m.logitlab", predict_only=True)[0]
    np.testing.assert_array_equal(light.predict(df), est.predict(df))
    # a crafted header asking 1.2 GB a label: refused, nothing allocated
    blob = (tmp_path / "m.logitlab").read_bytes()
    header = json.loads(zipfile.ZipFile(tmp_path / "m.logitlab").read("logitlab.json"))
    assert header["config"]["classes_dtype"] == "<U1"
    bad = hf.rewrite(blob, lambda h: h["config"].update(classes_dtype="<U300000000"))
    (tmp_path / "bad.logitlab").write_bytes(bad)
    from logitlab import ModelFileError

    with pytest.raises(ModelFileError, match="wider than its labels"):
        load_estimator(tmp_path / "bad.logitlab", predict_only=True)
