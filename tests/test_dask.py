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
def client(dask_cluster):
    """A client of the session's cluster, the default scheduler for this module's tests."""
    with distributed.Client(dask_cluster) as c:
        yield c


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


def params(est):
    return np.column_stack([est.coef_, est.intercept_])


def test_a_wide_dask_fit_runs_the_lean_l_bfgs_to_the_same_objective(client, rng, monkeypatch):
    # from LEAN_LBFGS_PARAMS coefficients on, the Dask fit (per-chunk sums on the client's
    # L-BFGS) takes estimators/_lbfgs.py as the in-memory fit does; here from 0 on
    from logitlab.estimators import _lbfgs, _linear_loss

    X = rng.normal(size=(4000, 30))
    y = rng.integers(0, 5, 4000)
    ref = SoftmaxRegression(tol=1e-9).fit(X, y)  # L-BFGS-B
    monkeypatch.setattr(_linear_loss, "LEAN_LBFGS_PARAMS", 0)
    calls = []
    lean = _lbfgs.minimize_lbfgs
    monkeypatch.setattr(_linear_loss, "minimize_lbfgs",
                        lambda *a, **k: calls.append(1) or lean(*a, **k))
    Xd, yd = client.persist([da.from_array(X, chunks=(1000, 30)), da.from_array(y, chunks=1000)])
    on_dask = SoftmaxRegression(tol=1e-9).fit(Xd, yd)
    assert calls  # it ran
    assert abs(on_dask.objective_ - ref.objective_) <= 1e-8 * ref.objective_
    assert rel(params(on_dask), params(ref)) < 1e-4


def test_dask_fit_matches_in_memory_fit(client, big_problem):
    X, y = big_problem
    in_memory = SoftmaxRegression(tol=1e-10).fit(X, y)
    Xd = da.from_array(X, chunks=(25_000, 50))
    yd = da.from_array(y, chunks=25_000)
    Xd, yd = client.persist([Xd, yd])  # the data lives on the workers from here on
    assert Xd.numblocks == (8, 1)
    on_dask = SoftmaxRegression(tol=1e-10).fit(Xd, yd)
    # the same objective; the parameters as close as L-BFGS's stop on it leaves them (the
    # intercepts, about 0.01 here, are weakly determined: whether a fit stops after 20
    # iterations or 21 moves them by 1.5e-7, 1.5e-5 of their own size, at objectives
    # 6e-15 apart), so they are compared with the coefficients
    assert abs(on_dask.objective_ - in_memory.objective_) < 1e-12 * in_memory.objective_
    assert rel(params(on_dask), params(in_memory)) < 1e-6
    np.testing.assert_array_equal(on_dask.classes_, in_memory.classes_)
    # uneven chunks give the same result
    uneven = (10_000, 70_000, 3_000, 50_000, 17_000, 30_000, 12_000, 8_000)
    Xu, yu = client.persist([da.from_array(X, chunks=(uneven, 50)),
                             da.from_array(y, chunks=(uneven,))])
    other = SoftmaxRegression(tol=1e-10).fit(Xu, yu)
    assert rel(params(other), params(in_memory)) < 1e-6


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


def _prefix_counts(dask_scheduler):
    """How many tasks of each key prefix the scheduler has seen (forgotten ones included)."""
    return {name: sum(p.state_counts.values()) for name, p in dask_scheduler.task_prefixes.items()}


def test_cli_train_with_the_dask_engine(tmp_path, dask_cluster, client):
    """On a cluster given by address (--scheduler): the one the tests run (the command's own
    local cluster, the default, is started by test_cli_data.py's Dask run)."""
    import csv
    import subprocess
    import sys

    before = client.run_on_scheduler(_prefix_counts)
    X, y = make_blobs(n_samples=3000, centers=3, random_state=0)
    data = tmp_path / "big.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "label"])
        w.writerows([[repr(float(a)), repr(float(b)), ["ant", "bee", "cat"][k]] for (a, b), k in zip(X, y)])
    model = tmp_path / "m.logitlab"
    res = subprocess.run([sys.executable, "-m", "logitlab", "train", str(data), "--target", "label",
                          "--engine", "dask", "--blocksize", "30kB",
                          "--scheduler", dask_cluster.scheduler_address, "-o", str(model)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "chunks" in res.stdout and "accuracy" in res.stdout and model.exists()
    assert f"Dask scheduler: {dask_cluster.scheduler_address}\n" in res.stdout
    # the L-BFGS steps' per-chunk sums (logitlab's _chunk_sums) ran on that cluster's workers
    after = client.run_on_scheduler(_prefix_counts)
    assert after.get("chunk_sums", 0) > before.get("chunk_sums", 0), (before, after)
    res = subprocess.run([sys.executable, "-m", "logitlab", "predict", str(model), str(data)],
                         capture_output=True, text=True, timeout=300)
    labels = res.stdout.splitlines()[1:]
    assert np.mean(np.array(labels) == np.array(["ant", "bee", "cat"])[y]) > 0.9


def test_cli_scheduler_is_refused_unless_it_is_an_address_for_the_dask_engine(tmp_path):
    from click.testing import CliRunner

    from logitlab.cli._main import cli
    from test_cli_data import one_line_error, run

    data = tmp_path / "d.csv"
    data.write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))

    def train(*args):
        return CliRunner().invoke(cli, ["train", str(data), "--target", "y", *args,
                                        "-o", str(tmp_path / "m.logitlab")])

    # was ignored: the model trained on this machine, not on the cluster asked for
    one_line_error(train("--scheduler", "tcp://127.0.0.1:8786"), "--engine dask", "--engine local")
    # was a local cluster: an unset variable in --scheduler "$ADDRESS" is no address
    one_line_error(train("--engine", "dask", "--scheduler", " "), "--scheduler", "got ' '")
    # was a traceback (a ValueError inside distributed). In a process of its own, as users run
    # it: distributed registers a Client as its process's default before it connects, and one
    # that fails stays registered until it is garbage-collected (Client.start).
    one_line_error(run("train", data, "--target", "y", "--engine", "dask", "--scheduler",
                       "nonsense", "-o", tmp_path / "m.logitlab"),
                   "--scheduler nonsense: no Dask scheduler to join there", "missing port number")
    assert not (tmp_path / "m.logitlab").exists()


def _softmax_objective(est, X, y, sw, C):
    """The penalised objective, computed densely and independently of logitlab."""
    from scipy.special import logsumexp

    Z = np.asarray(X.toarray() @ est.coef_.T + est.intercept_, dtype=np.float64)
    nll = logsumexp(Z, axis=1) - Z[np.arange(len(y)), np.searchsorted(est.classes_, y)]
    return (np.sum(sw * nll) + 0.5 / C * np.sum(est.coef_.astype(np.float64) ** 2)) / sw.sum()


@pytest.fixture(scope="module")
def text_like_problem():
    import scipy.sparse

    rng = np.random.default_rng(3)
    X = scipy.sparse.random(6000, 400, density=0.02, format="csr", random_state=rng,
                            data_rvs=lambda k: rng.uniform(0.1, 1.0, k))
    W = rng.normal(size=(5, 400)) * 3
    y = np.argmax(X @ W.T + rng.gumbel(size=(6000, 5)), axis=1)
    return X, y, rng.uniform(0.5, 2.0, 6000)


def _sparse_chunks(X, make_chunks):
    import scipy.sparse

    if make_chunks == "from_array":
        return da.from_array(X, chunks=(1500, 400))
    if make_chunks == "csc_from_array":
        return da.from_array(X.tocsc(), chunks=(2000, 400))
    if make_chunks == "column_chunks":  # rechunked to whole rows by the fit, still sparse
        return da.from_array(X, chunks=(1500, 100))
    return da.from_array(X.toarray(), chunks=(1000, 400)).map_blocks(scipy.sparse.csr_matrix)


def _check_sparse_dask_fit(Xd, X, y, sw, persist=lambda arrays: arrays):
    import scipy.sparse

    assert scipy.sparse.issparse(Xd.blocks[0, 0].compute())
    yd = da.from_array(y, chunks=(Xd.chunks[0],))
    swd = da.from_array(sw, chunks=(Xd.chunks[0],))
    Xd, yd, swd = persist([Xd, yd, swd])
    in_memory = SoftmaxRegression().fit(X, y, sample_weight=sw)
    on_dask = SoftmaxRegression().fit(Xd, yd, sample_weight=swd)
    f_mem = _softmax_objective(in_memory, X, y, sw, 1.0)
    f_dask = _softmax_objective(on_dask, X, y, sw, 1.0)
    assert abs(f_dask - f_mem) <= 1e-8 * f_mem
    assert abs(on_dask.objective_ - f_dask) <= 1e-10 * f_dask
    proba = on_dask.predict_proba(Xd)
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(proba.compute(), on_dask.predict_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(on_dask.predict(Xd).compute(), on_dask.predict(X))
    np.testing.assert_allclose(on_dask.decision_function(Xd).compute(),
                               on_dask.decision_function(X), rtol=1e-12)


@pytest.mark.parametrize("make_chunks", ["from_array", "csc_from_array", "column_chunks",
                                         "map_blocks"])
def test_dask_fit_on_sparse_chunks_equals_in_memory_sparse_fit(text_like_problem, make_chunks):
    import dask

    X, y, sw = text_like_problem
    with dask.config.set(scheduler="synchronous"):  # the chunk layouts, quickly
        _check_sparse_dask_fit(_sparse_chunks(X, make_chunks), X, y, sw)


def test_dask_fit_on_sparse_chunks_on_a_cluster(client, text_like_problem):
    # the sparse chunks and their partial sums travel between processes
    X, y, sw = text_like_problem
    _check_sparse_dask_fit(_sparse_chunks(X, "from_array"), X, y, sw, persist=client.persist)


def test_dask_fit_on_sparse_chunks_never_densifies_a_chunk(text_like_problem, monkeypatch):
    # in this process (the synchronous scheduler), so that the patched methods are the ones run
    import dask
    import scipy.sparse

    X, y, _ = text_like_problem
    densified = []
    for cls in (scipy.sparse.csr_matrix, scipy.sparse.csc_matrix):
        for name in ("toarray", "todense"):
            orig = getattr(cls, name)
            monkeypatch.setattr(cls, name, lambda self, *a, _o=orig, **k:
                                densified.append(1) or _o(self, *a, **k))
    with dask.config.set(scheduler="synchronous"):
        Xd = da.from_array(X, chunks=(1500, 200))
        yd = da.from_array(y, chunks=1500)
        clf = SoftmaxRegression().fit(Xd, yd)
        clf.predict_proba(Xd).compute()
    assert densified == []
    assert clf.n_iter_[0] > 1 and clf.coef_.shape == (5, 400)


def test_newton_cg_on_dask_collections_is_refused_by_name(rng):
    # its Hessian products would keep each chunk's probabilities on the workers: lbfgs only
    X = da.from_array(rng.normal(size=(200, 4)), chunks=(100, 4))
    y = da.from_array(rng.integers(0, 3, 200), chunks=100)
    with pytest.raises(ValueError, match="`solver`: 'newton-cg' does not take Dask"):
        SoftmaxRegression(solver="newton-cg").fit(X, y)
    assert SoftmaxRegression(solver="auto").fit(X, y).n_iter_[0] > 0  # auto: L-BFGS there
