"""Issue 19: the command line never corrupts or loses the user's data.

Each test is one of the issue's reproductions. Most run the command in this
process through Click's test runner (fast); those that need a real process
(a closed pipe, SIGKILL, a full disk, a process younger than a stale file)
run ``python -m logitlab``.
"""

import contextlib
import csv
import errno
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_iris, load_wine

from logitlab.cli._main import cli
from logitlab.estimators import load_estimator


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "logitlab", *map(str, args)], capture_output=True,
                          text=True, timeout=300, **kwargs)


def one_line_error(res, *words):
    """Exit status 2 and one line on stderr holding ``words``; works for both runners."""
    code = getattr(res, "exit_code", getattr(res, "returncode", None))
    assert code == 2, (code, res.stdout, res.stderr, getattr(res, "exception", None))
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def separable_csv(path, labels, seed=0):
    """Features ``a, b`` that separate the classes by 10 standard deviations, then ``y``."""
    rng = np.random.default_rng(seed)
    order = {c: i for i, c in enumerate(dict.fromkeys(labels))}
    rows = [[repr(10.0 * order[t] + rng.normal()), repr(rng.normal()), t] for t in labels]
    return write_csv(path, ["a", "b", "y"], rows)


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory):
    iris = load_iris()
    rows = [[repr(float(v)) for v in x] + [iris.target_names[t]] for x, t in zip(iris.data, iris.target)]
    return write_csv(tmp_path_factory.mktemp("iris") / "iris.csv", ["a", "b", "c", "d", "species"],
                     rows)


@pytest.fixture(scope="module")
def iris_model(iris_csv, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "iris.logitlab"
    res = invoke("train", iris_csv, "--target", "species", "-o", model)
    assert res.exit_code == 0, res.output
    return model


# ---- labels: kept as written ------------------------------------------------------

@pytest.mark.parametrize("written, kind", [
    (["90071992547409930", "90071992547409931"], "i"),  # 2**53 * 10: one float, two integers
    (["-9223372036854775808", "9223372036854775807"], "i"),  # int64's ends
    (["1e19", "2e19"], "U"),  # both were INT64_MIN
    (["007", "7"], "U"),  # were one class 7
    (["9223372036854775808", "1"], "U"),  # past int64: text, not a wrapped number
    (["1.0", "2.0"], "U"),
])
def test_numeric_labels_keep_their_written_text(tmp_path, written, kind):
    labels = [written[i % 2] for i in range(40)]
    data = separable_csv(tmp_path / "d.csv", labels)
    model = tmp_path / "m.logitlab"
    res = invoke("train", data, "--target", "y", "--validation-split", "0", "-o", model)
    assert res.exit_code == 0, (res.output, res.exception)
    est, _, _ = load_estimator(model)
    assert est.classes_.dtype.kind == kind
    assert sorted(str(c) for c in est.classes_) == sorted(written)  # the text, exactly
    res = invoke("predict", model, data, "--proba")
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(res.stdout.splitlines()))
    assert rows[0] == ["prediction"] + [f"proba_{c}" for c in est.classes_]
    assert [r[0] for r in rows[1:]] == labels  # separable: every row its own label, as written
    res = invoke("evaluate", model, data)
    assert res.exit_code == 0, res.output
    assert re.search(r"accuracy +│ 1\.0000", res.stdout)  # the column is as wide as its longest row


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf"])
def test_label_column_with_nan_or_inf_is_one_line_exit_2(tmp_path, bad):
    data = separable_csv(tmp_path / "d.csv", ["1", "2", "1", bad, "2", "1"])
    one_line_error(invoke("train", data, "--target", "y", "-o", tmp_path / "m.ll"),
                   "label column 'y'", repr(bad), "line 5")
    assert not (tmp_path / "m.ll").exists()


def test_empty_label_cell_is_refused_with_its_line(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n1,2,cat\n\n3,4,dog\n5,6,\n7,8,cat\n")  # a blank line 3 counts
    one_line_error(invoke("train", data, "--target", "y", "-o", tmp_path / "m.ll"),
                   "label column 'y'", "empty on line 5")



def test_validation_split_too_small_for_the_classes_is_one_line_exit_2(tmp_path):
    # 4 rows, 2 classes: a 20 % split holds 1 row, fewer than the classes (scikit-learn's
    # train_test_split raised, and the CLI printed its traceback with exit status 1)
    data = tmp_path / "tiny.csv"
    data.write_text("a,b,y\n1,2,x\n2,3,z\n3,1,x\n4,4,z\n")
    res = invoke("train", data, "--target", "y", "-o", tmp_path / "m.ll")
    one_line_error(res, "--validation-split 0.2 of 4 rows", "--validation-split 0")
    assert not (tmp_path / "m.ll").exists()
    res = invoke("train", data, "--target", "y", "--validation-split", "0", "-o",
                 tmp_path / "m.ll")
    assert res.exit_code == 0, res.output

def test_continuous_target_is_refused_naming_the_column(tmp_path):
    wine = load_wine()
    rows = [[repr(float(v)) for v in x] for x in wine.data]
    data = write_csv(tmp_path / "wine.csv", wine.feature_names, rows)
    err = one_line_error(invoke("train", data, "--target", "alcohol", "-o", tmp_path / "m.ll"),
                         "'alcohol'", "continuous", "--target")
    assert repr(float(wine.data[0, 0])) in err  # the value that gave it away, on line 2
    # the same rule for labels in an .npz
    np.savez(tmp_path / "wine.npz", X=wine.data[:, 1:], y=wine.data[:, 0])
    one_line_error(invoke("train", tmp_path / "wine.npz", "--target", "y", "-o", tmp_path / "m.ll"),
                   "'y'", "continuous")
    y = wine.target.astype(float)
    y[3] = np.nan
    np.savez(tmp_path / "nan.npz", X=wine.data, y=y)
    one_line_error(invoke("train", tmp_path / "nan.npz", "--target", "y", "-o", tmp_path / "m.ll"),
                   "nan", "index 3")


# ---- outputs never replace inputs ----------------------------------------------------

def test_output_that_is_an_input_is_refused(tmp_path, iris_csv, iris_model):
    data = tmp_path / "d.csv"
    data.write_bytes(iris_csv.read_bytes())
    model = tmp_path / "m.logitlab"
    model.write_bytes(iris_model.read_bytes())
    (tmp_path / "link.csv").symlink_to(data)
    os.link(data, tmp_path / "hard.csv")
    os.link(model, tmp_path / "hard.logitlab")
    sub = tmp_path / "sub"
    sub.mkdir()
    cases = [
        ("train", data, "--target", "species", "-o", data),
        ("train", tmp_path / "link.csv", "--target", "species", "-o", data),
        ("train", data, "--target", "species", "-o", tmp_path / "hard.csv"),
        ("train", data, "--target", "species", "-o", sub / ".." / "d.csv"),
        ("train", data, "--target", "species", "--model", "mlp", "-o", data),
        ("train", data, "--target", "species", "--engine", "dask", "-o", data),
        ("predict", model, data, "-o", data),
        ("predict", model, data, "-o", model),
        ("predict", model, data, "-o", tmp_path / "hard.logitlab"),
        ("predict", model, tmp_path / "link.csv", "-o", tmp_path / "hard.csv"),
    ]
    before = data.read_bytes(), model.read_bytes()
    for args in cases:
        res = invoke(*args)
        one_line_error(res, "--output", "is the", "choose another output path")
        assert res.stdout == "", args  # refused before any work
        assert (data.read_bytes(), model.read_bytes()) == before, args
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["d.csv", "m.logitlab", "link.csv", "hard.csv", "hard.logitlab", "sub"])


# ---- unwritable outputs: refused first, failures named, no temporaries -------------------

@contextlib.contextmanager
def _mounted_tmpfs(path, options):
    """A tmpfs at ``path`` (root only); skips, saying why, where mounting is not permitted."""
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:  # root writes through permission bits; a read-only file system stops it
        with _mounted_tmpfs(folder, "ro,size=64k") as f:
            yield f


def test_unwritable_output_is_refused_before_training(tmp_path, iris_csv, iris_model,
                                                      read_only_folder):
    for folder, why in ((tmp_path / "missing", "does not exist"),
                        (read_only_folder, "Read-only file system" if os.geteuid() == 0
                         else "Permission denied")):
        out = folder / "m.logitlab"
        for args in (("train", iris_csv, "--target", "species", "-o", out),
                     ("train", iris_csv, "--target", "species", "--model", "mlp", "-o", out),
                     ("predict", iris_model, iris_csv, "-o", out),
                     ("explore", "-o", out)):
            res = invoke(*args)
            one_line_error(res, f"cannot write {out}", why)
            assert res.stdout == "", args  # before any training
    # demo makes its folder (and missing parents), but not in a folder that takes no file
    res = invoke("demo", "-o", read_only_folder / "figs")
    one_line_error(res, f"cannot write into {read_only_folder / 'figs'}", "Read-only file system"
                   if os.geteuid() == 0 else "Permission denied")
    assert res.stdout == ""
    afile = tmp_path / "afile"
    afile.write_text("keep")
    one_line_error(invoke("demo", "-o", afile / "figs"), "is not a folder")
    assert afile.read_text() == "keep"


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_saving_is_one_line_naming_the_output(tmp_path, iris_csv, iris_model,
                                                              monkeypatch):
    import logitlab._io

    out = tmp_path / "m.logitlab"
    out.write_bytes(b"the previous model")
    monkeypatch.setattr(logitlab._io.os, "fsync", _no_space)
    for args, said in ((("train", iris_csv, "--target", "species", "-o", out), "saved"),
                       (("train", iris_csv, "--target", "species", "--model", "mlp", "--epochs",
                         "2", "-o", out), "Epoch 2/2"),  # the save after epoch 1 fails
                       (("predict", iris_model, iris_csv, "-o", out), "wrote")):
        res = invoke(*args)
        err = one_line_error(res, f"cannot write {out}", "No space left on device")
        assert ".tmp" not in err and said not in res.stdout
        if args[0] == "train":  # the output was checked first, then the training ran
            assert "training" in res.stdout
        assert out.read_bytes() == b"the previous model"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.logitlab"]  # no temporary left
    from logitlab._io import WriteError, atomic_write

    with pytest.raises(WriteError) as info:
        with atomic_write(tmp_path / "x.csv", "w") as fh:
            fh.write("x")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "x.csv")


def test_disk_full_on_a_64k_tmpfs(tmp_path, iris_csv):
    with _mounted_tmpfs(tmp_path / "small", "size=64k") as small:
        out = small / "m.logitlab"
        # 100x100 hidden units with Adam's two slots: about 250 kB, four times the disk
        res = run("train", iris_csv, "--target", "species", "--model", "mlp", "--hidden",
                  "100,100", "--epochs", "3", "-o", out)
        err = one_line_error(res, f"cannot write {out}", "No space left on device")
        assert ".tmp" not in err
        assert list(small.iterdir()) == []


# ---- stale temporaries of a killed run ------------------------------------------------

_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from logitlab._io import atomic_write
    writer = atomic_write(sys.argv[1], "wb")
    fh = writer.__enter__()
    fh.write(b"half a model")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
""")

_LIVE_WRITER = textwrap.dedent("""
    import sys
    from logitlab._io import atomic_write
    with atomic_write(sys.argv[1], "w") as fh:
        fh.write("the live writer's file")
        print("writing", flush=True)
        sys.stdin.readline()  # hold the temporary open until told
""")


def _temporaries(path):
    """Names as tempfile.mkstemp(prefix=".NAME.", suffix=".tmp") makes them."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")
    return sorted(p.name for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def _kill_a_writer(target, also=()):
    res = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], capture_output=True)
    assert res.returncode == -signal.SIGKILL
    stale = sorted(set(_temporaries(target)) - set(also))
    assert len(stale) == 1
    time.sleep(0.05)  # the kernel dates the next process's start in 10 ms ticks
    return stale[0]


def test_stale_temporary_from_a_sigkill_is_removed_by_the_next_save(tmp_path, iris_csv,
                                                                    iris_model):
    model = tmp_path / "m.logitlab"
    # a writer still at work, older than the processes below: its temporary is kept
    live = subprocess.Popen([sys.executable, "-c", _LIVE_WRITER, str(model)], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert live.stdout.readline() == "writing\n"
    live_tmp = _temporaries(model)
    assert len(live_tmp) == 1
    killed = _kill_a_writer(model, also=live_tmp)
    # files that only look alike are someone else's: kept
    others = [f".{model.name}.abc.tmp", f".{model.name}.ABCDEFGH.tmp", "m.logitlab.tmp",
              f".x{model.name}.abcdefgh.tmp"]
    for name in others:
        (tmp_path / name).write_text("not ours")
    res = run("train", iris_csv, "--target", "species", "-o", model)
    assert res.returncode == 0, res.stderr
    # the killed writer's temporary is gone; the live writer's is not
    assert _temporaries(model) == live_tmp and killed not in live_tmp
    live.stdin.write("\n")
    live.stdin.close()
    assert live.wait(timeout=60) == 0
    assert model.read_text() == "the live writer's file" and _temporaries(model) == []
    for name in others:
        assert (tmp_path / name).read_text() == "not ours"
    # --resume cleans the file it resumes, even when the output is elsewhere
    import shutil

    shutil.copy(iris_model, model)
    _kill_a_writer(model)
    res = run("train", iris_csv, "--resume", model, "-o", tmp_path / "other.logitlab")
    assert res.returncode == 0, res.stderr
    assert _temporaries(model) == []


# ---- a pandas index column -----------------------------------------------------------------

def test_pandas_index_column_is_dropped_with_a_warning(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    y = np.array(["ant", "bee"])[np.arange(60) % 2]
    frame = pd.DataFrame({"a": rng.normal(size=60) + 10 * (y == "bee"), "b": rng.normal(size=60),
                          "y": y})
    data = tmp_path / "d.csv"
    frame.to_csv(data)  # the index as an unnamed first column
    with open(data) as fh:
        assert next(csv.reader(fh)) == ["", "a", "b", "y"]
    model = tmp_path / "m.logitlab"
    res = invoke("train", data, "--target", "y", "-o", model)
    assert res.exit_code == 0, res.output
    assert res.stderr.count("warning: ") == 1 and "dropped the first column" in res.stderr
    assert "2 features: a, b" in res.stdout
    _, extra, _ = load_estimator(model)
    assert extra["features"] == ["a", "b"]
    res = invoke("predict", model, data)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1:] == list(y)
    # any other unnamed or repeated column is a mistake
    write_csv(tmp_path / "gap.csv", ["a", "", "y"], [[1, 2, "ant"], [3, 4, "bee"]])
    one_line_error(invoke("train", tmp_path / "gap.csv", "--target", "y", "-o", model),
                   "column 2 has no name")
    write_csv(tmp_path / "twice.csv", ["a", "a", "y"], [[1, 2, "ant"], [3, 4, "bee"]])
    one_line_error(invoke("train", tmp_path / "twice.csv", "--target", "y", "-o", model),
                   "'a' twice")


# ---- a closed pipe -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """100 classes: evaluate's confusion matrix and predict --proba write well over the
    64 kB a pipe holds, so a reader that stops early is certain to close it on us."""
    folder = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    k = np.arange(1000) % 100
    X = rng.normal(size=(1000, 2)) * 0.2 + np.c_[np.cos(k * 0.06), np.sin(k * 0.06)] * 5
    data = write_csv(folder / "wide.csv", ["a", "b", "y"],
                     [[repr(float(a)), repr(float(b)), f"c{t}"] for (a, b), t in zip(X, k)])
    model = folder / "wide.logitlab"
    res = invoke("train", data, "--target", "y", "--validation-split", "0", "-o", model)
    assert res.exit_code == 0, res.output
    return model, data


@pytest.mark.parametrize("command", ["evaluate", "predict", "train"])
def test_closed_pipe_ends_quietly_with_status_0(wide_model, tmp_path, command):
    model, data = wide_model
    out = tmp_path / "again.logitlab"
    args = {"evaluate": ["evaluate", model, data], "predict": ["predict", model, data, "--proba"],
            "train": ["train", data, "--target", "y", "-o", out]}
    env = dict(os.environ, COLUMNS="3000")
    child = subprocess.Popen([sys.executable, "-m", "logitlab", *map(str, args[command])],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = child.stdout.readline()  # `| head -1`
    child.stdout.close()
    assert child.wait(timeout=300) == 0
    assert first and child.stderr.read() == b""
    if command == "train":  # the model is still trained and saved
        est, _, _ = load_estimator(out)
        assert len(est.classes_) == 100


# ---- why the network stopped --------------------------------------------------------------

def test_mlp_stopping_early_says_why(tmp_path, iris_csv):
    from logitlab import MLPClassifier

    X, y = load_iris(return_X_y=True)
    clf = MLPClassifier(epochs=500, learning_rate=0.05, random_state=0).fit(X, y)
    n, losses = clf.n_iter_, np.array(clf.loss_curve_)
    assert n < 500
    words = clf.stop_reason_.split()
    assert clf.stop_reason_.startswith(f"stopped early at epoch {n} of 500: the training loss "
                                       "did not improve on its best (epoch ")
    best = int(words[words.index("(epoch") + 1].rstrip("):"))
    waited = int(words[words.index("for") + 1])
    assert "tol=0.0001" in clf.stop_reason_ and "(n_iter_no_change=10)" in clf.stop_reason_
    # what the sentence claims, read off the loss curve: the best epoch's loss, then
    # `waited` epochs none of which beat it by tol, and that was more than the patience
    assert waited == n - best == 11
    assert np.all(losses[best:] >= losses[best - 1] - 1e-4)
    assert best == 1 or losses[best - 1] < losses[:best - 1].min()
    full = MLPClassifier(epochs=3, random_state=0).fit(X, y)
    assert full.stop_reason_ == "trained all 3 epochs"
    # and the command line prints it
    out = tmp_path / "m.logitlab"
    res = invoke("train", iris_csv, "--target", "species", "--model", "mlp", "--epochs", "500",
                 "--learning-rate", "0.05", "-o", out)
    assert res.exit_code == 0, res.output
    est, _, _ = load_estimator(out)
    assert f"stopped early at epoch {est.n_iter_} of 500: the training loss" in res.stdout


def test_dask_engine_keeps_labels_as_written_and_drops_a_pandas_index(tmp_path, dask_cluster):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    k = np.arange(600) % 3
    y = np.array(["007", "7", "8"])[k]
    frame = pd.DataFrame({"a": rng.normal(size=600) + 10 * k, "b": rng.normal(size=600), "y": y})
    data = tmp_path / "d.csv"
    frame.to_csv(data)
    model = tmp_path / "m.logitlab"
    res = run("train", data, "--target", "y", "--engine", "dask", "--blocksize", "10kB", "-o", model)
    assert res.returncode == 0, res.stderr
    assert "warning: " in res.stderr and "dropped the first column" in res.stderr
    est, extra, _ = load_estimator(model)
    assert list(est.classes_) == ["007", "7", "8"] and extra["features"] == ["a", "b"]
    frame.loc[5, "y"] = None  # an empty cell
    frame.to_csv(data, index=False)
    # on the tests' running cluster (the first run started the command's own)
    res = run("train", data, "--target", "y", "--engine", "dask",
              "--scheduler", dask_cluster.scheduler_address, "-o", model)
    # (distributed logs its cluster's own shutdown on stderr, before or after ours)
    assert res.returncode == 2
    ours = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
    assert ours == [f"Error: the label column 'y' of {data} has an empty or missing cell"]


def test_warnings_are_one_line_without_a_location(tmp_path, monkeypatch):
    # found by review: a ConvergenceWarning during `train` printed click/core.py:911 and the
    # source line there, which say nothing to the command's user
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from logitlab.cli import _train

    def warns(*args, **kwargs):
        warnings.warn("L-BFGS-B did not converge\nin 3 iterations", ConvergenceWarning)

    monkeypatch.setattr(_train, "run_predict", warns)
    res = invoke("predict", tmp_path / "m.ll", tmp_path / "d.csv")
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines() == [
        "warning: ConvergenceWarning: L-BFGS-B did not converge in 3 iterations"]


def test_options_of_the_other_model_are_refused_not_ignored(tmp_path, iris_csv):
    # a stranger's review: `train --epochs 5` (default --model softmax) ran L-BFGS and said
    # nothing of the epochs; each model's own options, typed for the other, are refused
    out = tmp_path / "m.ll"
    one_line_error(invoke("train", iris_csv, "--target", "species", "--epochs", 5, "-o", out),
                   "--epochs applies to --model mlp", "--model softmax")
    one_line_error(invoke("train", iris_csv, "--target", "species", "--hidden", "8",
                          "--learning-rate", 0.01, "-o", out), "--hidden, --learning-rate apply")
    one_line_error(invoke("train", iris_csv, "--target", "species", "--model", "mlp", "--C", 2,
                          "-o", out), "--C applies to --model softmax")
    assert not out.exists()
    res = invoke("train", iris_csv, "--target", "species", "--model", "mlp", "--epochs", 2,
                 "-o", out)  # the mlp's own options still work
    assert res.exit_code == 0, res.output
    res = invoke("train", iris_csv, "--target", "species", "--resume", out, "--epochs", 3,
                 "-o", out)  # with --resume the file says which model: --epochs is its
    assert res.exit_code == 0, res.output
    one_line_error(invoke("train", iris_csv, "--target", "species", "--resume", out,
                          "--max-iter", 5, "-o", out), "--max-iter applies to --model softmax")
    one_line_error(invoke("train", iris_csv, "--target", "species", "--model", "mlp",
                          "--max-iter", 5, "-o", tmp_path / "n.ll"),
                   "--max-iter applies to --model softmax")


def test_max_iter_is_the_cli_s_as_the_convergence_warning_asks(tmp_path, iris_csv):
    # a stranger's review: the warning said "increase max_iter" and the CLI had no such
    # option; --max-iter reaches the fit, on a new model and on --resume
    out = tmp_path / "m.ll"
    res = invoke("train", iris_csv, "--target", "species", "--max-iter", 3, "-o", out)
    assert res.exit_code == 0, res.output
    assert "failed to converge after 3 iterations" in res.stderr
    assert "L-BFGS not converged (a limit reached) after 3 iterations" in res.stdout
    assert load_estimator(out)[0].max_iter == 3
    res = invoke("train", iris_csv, "--target", "species", "--resume", out, "--max-iter", 500,
                 "-o", out)
    assert res.exit_code == 0, res.output
    assert load_estimator(out)[0].max_iter == 500
    n = int(re.search(r"L-BFGS converged after (\d+) iterations", res.stdout).group(1))
    assert 0 < n < 500


def test_an_output_that_is_no_plain_file_is_written_as_a_shell_would(tmp_path, iris_csv,
                                                                        iris_model):
    # A stranger's review: the atomic write renamed its temporary over whatever -o named. A
    # symlink became a file (its target kept the old contents), a FIFO's reader got nothing,
    # and as root `-o /dev/null` replaced the system's /dev/null with a regular file.
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert invoke("predict", iris_model, iris_csv, "-o", link).exit_code == 0
    assert link.is_symlink() and real.read_text().startswith("prediction")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    res = run("predict", iris_model, iris_csv, "-o", fifo)
    assert res.returncode == 0, res.stderr
    assert reader.communicate(timeout=60)[0].count("\n") == 151  # the header and 150 rows
    assert fifo.is_fifo()
    res = run("predict", iris_model, iris_csv, "-o", os.devnull)
    assert res.returncode == 0, res.stderr
    assert not os.path.isfile(os.devnull)  # still the device
    one_line_error(invoke("train", iris_csv, "--target", "species", "-o", ""), "an empty path")


def test_a_write_protected_output_is_refused(tmp_path, iris_csv, iris_model, monkeypatch):
    # The temporary's rename needs only the folder's permission: a file its owner had made
    # read-only was replaced. (Root may write any file, as the shell's > lets it: the
    # permission check is os.access's, faked here so that the test means the same as root.)
    from logitlab import _io

    out = tmp_path / "kept.csv"
    out.write_text("keep\n")
    real_access = os.access
    monkeypatch.setattr(_io.os, "access", lambda p, mode: (
        real_access(p, mode) and not (os.fspath(p) == os.fspath(out) and mode & os.W_OK)))
    one_line_error(invoke("predict", iris_model, iris_csv, "-o", out), "write-protected")
    assert out.read_text() == "keep\n"


def test_contradictions_are_refused_before_training(tmp_path, iris_csv):
    # A stranger's review: each of these trained first and then failed with a traceback
    # (a 2-row file, one --multilabel column), or ignored or contradicted what was typed
    # (--resume with --model, --epochs below the saved count, labels the model never saw).
    out = tmp_path / "m.ll"
    two = write_csv(tmp_path / "two.csv", ["a", "b", "label"], [[1, 2, "x"], [4, 5, "y"]])
    one_line_error(invoke("train", two, "--target", "label", "-o", out),
                   "leaves the training rows a single class ('x')")
    multi = write_csv(tmp_path / "ml.csv", ["a", "car", "bus"],
                      [[i, i % 2, (i // 2) % 2] for i in range(12)])
    one_line_error(invoke("train", multi, "--multilabel", "car", "--model", "mlp", "-o", out),
                   "two or more 0/1 label columns", "use --target car")
    one_line_error(invoke("train", multi, "--multilabel", "car,car", "--model", "mlp", "-o", out),
                   "'car' twice")
    for flag in (["--validation-split", "nan"], ["--C", "nan"],
                 ["--model", "mlp", "--learning-rate", "inf"]):
        res = invoke("train", iris_csv, "--target", "species", *flag, "-o", out)
        assert res.exit_code == 2 and "is not a finite number" in res.output, res.output
    assert not out.exists()
    assert invoke("train", iris_csv, "--target", "species", "--model", "mlp", "--epochs", 2,
                  "-o", out).exit_code == 0
    one_line_error(invoke("train", iris_csv, "--resume", out, "--model", "mlp", "--hidden", "4",
                          "-o", tmp_path / "r.ll"), "--hidden, --model: --resume")
    one_line_error(invoke("train", iris_csv, "--resume", out, "--epochs", 1,
                          "-o", tmp_path / "r.ll"), "has trained 2 epochs already")
    numbers = write_csv(tmp_path / "n.csv", ["a", "b", "c", "d", "species"],
                        [[1, 2, 3, 4, i % 3] for i in range(30)])
    one_line_error(invoke("train", numbers, "--resume", out, "--epochs", 3,
                          "-o", tmp_path / "r.ll"), "labels the model in --resume does not know")
    assert not (tmp_path / "r.ll").exists()


def test_predict_reads_a_file_whose_label_column_is_left_empty(tmp_path, iris_csv, iris_model):
    # A column to be filled in (a spreadsheet's): predict needs no labels but refused the
    # file; evaluate, which needs them, still refuses it with the line.
    with open(iris_csv, newline="") as fh:
        rows = list(csv.reader(fh))
    blank = write_csv(tmp_path / "blank.csv", rows[0], [r[:-1] + [""] for r in rows[1:]])
    res = invoke("predict", iris_model, blank, "-o", tmp_path / "p.csv")
    assert res.exit_code == 0, res.output
    res_full = invoke("predict", iris_model, iris_csv, "-o", tmp_path / "q.csv")
    assert res_full.exit_code == 0
    assert (tmp_path / "p.csv").read_text() == (tmp_path / "q.csv").read_text()
    one_line_error(invoke("evaluate", iris_model, blank), "is empty on line 2")


def test_running_out_of_memory_is_one_line(tmp_path, iris_csv, monkeypatch):
    # `--hidden 100000000` (24 GiB of weights) ended in NumPy's _ArrayMemoryError traceback.
    from logitlab.cli import _train

    def too_big(*args, **kwargs):
        np.empty((10**6, 10**6, 10**6))

    monkeypatch.setattr(_train, "run_train", too_big)
    one_line_error(invoke("train", iris_csv, "--target", "species", "-o", tmp_path / "m.ll"),
                   "out of memory: Unable to allocate")


def test_stdout_into_a_file_and_a_trailing_separator(tmp_path, iris_csv, iris_model):
    # A review: `-o /dev/stdout` into a file the shell opened replaced that file (what was
    # printed before and after went to the old inode), and `-o models/` (missing) made a
    # file named models.
    script = ("import sys; from logitlab._io import atomic_write\n"
              "print('before', flush=True)\n"
              "with atomic_write('/dev/stdout', 'w') as fh: fh.write('MODEL\\n')\n"
              "print('after')\n")
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        subprocess.run([sys.executable, "-c", script], stdout=fh, check=True, timeout=60)
    assert out.read_text() == "before\nMODEL\nafter\n"
    one_line_error(invoke("predict", iris_model, iris_csv, "-o", f"{tmp_path}/models/"),
                   "ends with a separator")
    assert not (tmp_path / "models").exists()


def test_flags_that_would_be_ignored_or_misnamed_are_refused(tmp_path, iris_csv, iris_model):
    one_line_error(invoke("train", iris_csv, "--target", "species", "--blocksize", "abc",
                          "-o", tmp_path / "m.ll"), "--blocksize", "--engine local")
    one_line_error(invoke("predict", iris_model, iris_csv, "-o", tmp_path / "p.npz"),
                   "predict writes a CSV")
    assert not (tmp_path / "p.npz").exists()


def test_a_wide_confusion_matrix_is_split_not_cut(wide_model):
    # a stranger's review: at 15 classes in 80 columns the counts read "1…"; the predicted
    # columns now go over as many tables as the width needs, every count whole
    from logitlab.cli._metrics import confusion_matrix
    from logitlab.cli._data import read_table

    model, data = wide_model
    res = run("evaluate", model, data, "--target", "y", env=dict(os.environ, COLUMNS="80"))
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout and max(map(len, res.stdout.splitlines())) <= 80
    names = [str(c) for c in load_estimator(model)[0].classes_]
    rows = {name: [] for name in names}
    for line in res.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and cells[0] in rows and all(c.isdigit() for c in cells[1:]):
            rows[cells[0]] += [int(c) for c in cells[1:]]
    est, _, arrays = load_estimator(model)
    table = read_table(data, target="y")
    X = (table.X - arrays["mean"]) / arrays["scale"]  # as train scaled it (README)
    want = confusion_matrix(table.y, est.predict(X), labels=est.classes_)
    assert [rows[name] for name in names] == want.tolist()


def test_a_long_class_name_does_not_squeeze_the_counts_out():
    # a stranger's review: one class name of 90 characters at 80 columns took the width of
    # every table and left the counts blank; long names are now shortened, counts whole
    import io

    from rich.console import Console

    from logitlab.cli._train import print_confusion_matrix

    rng = np.random.default_rng(0)
    cm = rng.integers(0, 30, (40, 40))
    np.fill_diagonal(cm, rng.integers(100, 140, 40))
    labels = [f"k{i}" for i in range(40)]
    labels[3] = "a_really_long_class_name_" * 4
    out = io.StringIO()
    print_confusion_matrix(Console(width=80, file=out), cm, labels)
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= 80
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) > 1 and all(c.isdigit() for c in cells[1:]):
            rows.setdefault(cells[0], []).extend(int(c) for c in cells[1:])
    short = next(name for name in rows if name.endswith("…"))
    got = [rows[short if i == 3 else name] for i, name in enumerate(labels)]
    assert got == cm.tolist()
