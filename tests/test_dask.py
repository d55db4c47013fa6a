"""Past one machine's memory: Dask-backed fit, lazy prediction, streaming training."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

da = pytest.importorskip("dask.array", reason="the [dask] extra is part of the test extras")
distributed = pytest.importorskip("distributed")

import logitlab  # noqa: E402
from logitlab import MLPClassifier, Sequential, SoftmaxRegression  # noqa: E402
from logitlab.layers import Dense  # noqa: E402
from logitlab.losses import SparseCategoricalCrossentropy  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, memory_limit="2GiB")
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def big_problem():
    rng = np.random.default_rng(0)
    n, d, k = 200_000, 50, 5
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k)) * 0.3
    y = np.argmax(X @ W + rng.gumbel(size=(n, k)), axis=1)
    return X, y


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_dask_fit_matches_in_memory_fit(client, big_problem):
    X, y = big_problem
    in_memory = SoftmaxRegression(tol=1e-10).fit(X, y)
    Xd = da.from_array(X, chunks=(25_000, 50))
    yd = da.from_array(y, chunks=25_000)
    Xd, yd = client.persist([Xd, yd])  # the data lives on the workers from here on
    assert Xd.numblocks == (8, 1)
    on_dask = SoftmaxRegression(tol=1e-10).fit(Xd, yd)
    assert rel(on_dask.coef_, in_memory.coef_) < 1e-6
    assert rel(on_dask.intercept_, in_memory.intercept_) < 1e-6
    np.testing.assert_array_equal(on_dask.classes_, in_memory.classes_)
    # uneven chunks give the same result
    uneven = (10_000, 70_000, 3_000, 50_000, 17_000, 30_000, 12_000, 8_000)
    Xu, yu = client.persist([da.from_array(X, chunks=(uneven, 50)),
                             da.from_array(y, chunks=(uneven,))])
    other = SoftmaxRegression(tol=1e-10).fit(Xu, yu)
    assert rel(other.coef_, in_memory.coef_) < 1e-6


def test_predictions_on_dask_are_lazy_and_exact(client, big_problem):
    X, y = big_problem
    X, y = X[:20_000], y[:20_000]
    clf = SoftmaxRegression().fit(X, y)
    Xd = da.from_array(X, chunks=(5_000, 50))
    proba = clf.predict_proba(Xd)
    assert isinstance(proba, da.Array) and proba.numblocks == (4, 1)
    np.testing.assert_allclose(proba.compute(), clf.predict_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(Xd).compute(), clf.predict(X))
    np.testing.assert_allclose(clf.predict_log_proba(Xd).compute(), clf.predict_log_proba(X))
    np.testing.assert_allclose(clf.decision_function(Xd).compute(), clf.decision_function(X))
    mlp = MLPClassifier(epochs=2, random_state=0).fit(X[:2000], y[:2000])
    np.testing.assert_allclose(mlp.predict_proba(Xd).compute(), mlp.predict_proba(X), rtol=1e-12)


def test_string_labels_and_dataframes(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y = make_blobs(n_samples=3000, centers=3, random_state=0)
    names = np.array(["ant", "bee", "cat"])[y]
    frame = pd.DataFrame(X, columns=["a", "b"])
    ddf = dd.from_pandas(frame, npartitions=3)
    labels = dd.from_pandas(pd.Series(names), npartitions=3)
    clf = SoftmaxRegression(tol=1e-10).fit(ddf, labels)
    ref = SoftmaxRegression(tol=1e-10).fit(X, names)
    assert list(clf.classes_) == ["ant", "bee", "cat"]
    assert rel(clf.coef_, ref.coef_) < 1e-6


def test_sequential_predict_on_dask_and_training_on_chunks():
    X, y = make_blobs(n_samples=4000, centers=[[-5, 2], [-2, -2], [1, 2], [5, -2]], random_state=30)
    Xd = da.from_array(X, chunks=(1000, 2))
    yd = da.from_array(y, chunks=1000)
    chunks = list(zip(Xd.to_delayed().ravel(), yd.to_delayed().ravel()))
    logitlab.set_random_seed(0)
    model = Sequential([Dense(25, "relu"), Dense(15, "relu"), Dense(4)])
    model.compile(loss=SparseCategoricalCrossentropy(from_logits=True), optimizer="adam",
                  metrics=["accuracy"])
    hist = model.fit(chunks, epochs=5, verbose=0)
    assert len(hist.history["loss"]) == 5 and hist.history["accuracy"][-1] > 0.95
    lazy = model.predict(Xd)
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), model.predict(X), rtol=1e-6)
    # a one-shot generator serves one epoch; a function serves many
    with pytest.raises(ValueError, match="one-shot iterator"):
        model.fit((c for c in chunks), epochs=2, verbose=0)
    model.fit(lambda: iter(chunks), epochs=2, verbose=0)


def test_streaming_partial_fit_from_pieces():
    X, y = make_blobs(n_samples=3000, centers=3, random_state=1)
    clf = MLPClassifier(learning_rate=0.01, random_state=0)
    for _ in range(3):
        for start in range(0, 3000, 500):
            clf.partial_fit(X[start:start + 500], y[start:start + 500], classes=[0, 1, 2])
    assert clf.score(X, y) > 0.95


def test_core_never_imports_dask():
    import subprocess
    import sys

    code = ("import sys, logitlab, logitlab.losses, logitlab.models; "
            "print(any(m.split('.')[0] == 'dask' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_cli_train_with_the_dask_engine(tmp_path):
    import csv
    import subprocess
    import sys

    X, y = make_blobs(n_samples=3000, centers=3, random_state=0)
    data = tmp_path / "big.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "label"])
        w.writerows([[repr(float(a)), repr(float(b)), ["ant", "bee", "cat"][k]] for (a, b), k in zip(X, y)])
    model = tmp_path / "m.logitlab"
    res = subprocess.run([sys.executable, "-m", "logitlab", "train", str(data), "--target", "label",
                          "--engine", "dask", "--blocksize", "30kB", "-o", str(model)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "chunks" in res.stdout and "accuracy" in res.stdout and model.exists()
    res = subprocess.run([sys.executable, "-m", "logitlab", "predict", str(model), str(data)],
                         capture_output=True, text=True, timeout=300)
    labels = res.stdout.splitlines()[1:]
    assert np.mean(np.array(labels) == np.array(["ant", "bee", "cat"])[y]) > 0.9
