"""`logitlab train --calibrate`, the calibration rows of `evaluate` and its `--plot`
(issue 22)."""

import csv
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import sklearn.metrics as skm
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

import hostile_files as hf
from logitlab._softmax import softmax
from logitlab.calibration import TemperatureScaling
from logitlab.estimators import load_estimator
from logitlab.metrics import brier_score, expected_calibration_error

from test_cli import one_line_error, run, write_csv
from helpers import cli_in_fresh_process


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory):
    """Iris by its sepals only: about 80 % separable, so the held-out rows hold mistakes
    (on all four features an MLP classifies them all, and no temperature is the data's)."""
    iris = load_iris()
    names = ["sepal_length", "sepal_width"]
    rows = [list(x[:2]) + [iris.target_names[t]] for x, t in zip(iris.data, iris.target)]
    return write_csv(tmp_path_factory.mktemp("data") / "iris.csv", names + ["species"], rows)


@pytest.fixture(scope="module")
def calibrated(iris_csv, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "iris.logitlab"
    res = run("train", iris_csv, "--target", "species", "--model", "mlp", "--hidden", "32",
              "--epochs", "150", "--learning-rate", "0.01", "--calibrate", "-o", model)
    assert res.returncode == 0, res.stderr
    return model, res.stdout


def _row(text, name):
    """The numbers on the report's row ``name``."""
    line = next(l for l in text.splitlines() if re.search(rf"[│┃] {re.escape(name)} +[│┃]", l))
    return [float(v) for v in re.findall(r"-?\d+\.\d+", line)]


def test_train_calibrate_stores_the_temperature_fitted_on_held_out_training_rows(calibrated):
    model, out = calibrated
    est, extra, arrays = load_estimator(model)
    t = arrays["temperature"]
    assert t.shape == (1,) and t.dtype == np.float64
    # the split the command makes: validation 20 % of all, then 20 % of the rest to calibrate
    iris = load_iris()
    y = iris.target_names[iris.target]
    X_tr, _, y_tr, _ = train_test_split(iris.data[:, :2], y, test_size=0.2, random_state=0,
                                        stratify=y)
    X_tr, X_cal, y_tr, y_cal = train_test_split(X_tr, y_tr, test_size=0.2, random_state=0,
                                                stratify=y_tr)
    np.testing.assert_allclose(arrays["mean"], X_tr.mean(axis=0), rtol=1e-12)
    X_cal = (X_cal - arrays["mean"]) / arrays["scale"]
    by_hand = TemperatureScaling().fit(est.model_.predict(X_cal), np.searchsorted(est.classes_,
                                                                                  y_cal))
    np.testing.assert_allclose(t[0], by_hand.temperature_, rtol=1e-9)
    assert f"held-out training rows: T = {t[0]:.4g}" in out.replace("\n", " ")
    for name in ("ECE (15 bins)", "Brier score", "log loss"):
        before, after = _row(out.split("calibration, validation")[1], name)[:2]
        assert before >= 0 and after >= 0


def test_predict_and_evaluate_use_the_stored_temperature(calibrated, iris_csv):
    model, _ = calibrated
    est, _, arrays = load_estimator(model)
    iris = load_iris()
    X = (iris.data[:, :2] - arrays["mean"]) / arrays["scale"]
    expected = softmax(est.model_.predict(X).astype(np.float64) / arrays["temperature"][0], axis=1)
    res = run("predict", model, iris_csv, "--proba")
    assert res.returncode == 0, res.stderr
    rows = list(csv.reader(io.StringIO(res.stdout)))
    got = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not np.allclose(got, est.predict_proba(X), rtol=1e-3)  # not the raw probabilities
    res = run("evaluate", model, iris_csv, "--target", "species")
    assert res.returncode == 0, res.stderr
    y = np.searchsorted(est.classes_, iris.target_names[iris.target])
    assert _row(res.stdout, "ECE (15 bins)")[0] == pytest.approx(
        expected_calibration_error(y, expected), abs=6e-5)
    assert _row(res.stdout, "Brier score")[0] == pytest.approx(brier_score(y, expected), abs=6e-5)
    assert _row(res.stdout, "top-2 accuracy")[0] == pytest.approx(
        skm.top_k_accuracy_score(y, expected, k=2), abs=6e-5)
    assert "top-5" not in res.stdout  # three classes


def test_evaluate_plot_writes_a_png_and_refuses_an_input(calibrated, iris_csv, tmp_path):
    model, _ = calibrated
    png = tmp_path / "figs" / "reliability.png"
    png.parent.mkdir()
    res = run("evaluate", model, iris_csv, "--plot", png)
    assert res.returncode == 0, res.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = iris_csv.read_bytes()
    one_line_error(run("evaluate", model, iris_csv, "--plot", iris_csv), "--plot", "data file")
    assert iris_csv.read_bytes() == before
    one_line_error(run("evaluate", model, iris_csv, "--plot", tmp_path / "nowhere" / "r.png"),
                   "cannot write")
    # a data file whose name is not UTF-8 (its byte kept as a lone surrogate): matplotlib's
    # font raised on the title; the title shows U+FFFD instead
    odd = tmp_path / os.fsdecode(b"bad\xff.csv")
    odd.write_bytes(iris_csv.read_bytes())
    res = subprocess.run([sys.executable, "-m", "logitlab", "evaluate", str(model), str(odd),
                          "--plot", str(tmp_path / "odd.png")], capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "odd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_without_plot_imports_no_matplotlib_or_sklearn(calibrated, iris_csv, tmp_path):
    model, _ = calibrated
    res = cli_in_fresh_process([["evaluate", model, iris_csv]], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "ECE (15 bins)" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == "HEAVY []"


@pytest.mark.parametrize("value, match", [(np.array([0.0]), "must be positive"),
                                          (np.array([np.nan]), "NaN or inf"),
                                          (np.array([1.0, 2.0]), r"shape \(1,\)")])
def test_damaged_stored_temperature_is_a_one_line_error(calibrated, iris_csv, tmp_path, value,
                                                       match):
    model, _ = calibrated
    bad = tmp_path / "bad.logitlab"
    bad.write_bytes(hf.rewrite(model.read_bytes(), arrays={"extra/temperature": value}))
    res = run("evaluate", bad, iris_csv)
    one_line_error(res, "extra/temperature")
    assert re.search(match, res.stderr)


def test_multilabel_calibrate_fits_a_temperature_per_label(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3))
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] + X[:, 0] > 0], axis=1).astype(int)
    flip = rng.random(Y.shape) < 0.1
    Y = np.where(flip, 1 - Y, Y)
    path = write_csv(tmp_path / "ml.csv", ["a", "b", "c", "car", "bus", "pedestrian"],
                     np.column_stack([X, Y]).tolist())
    res = run("train", path, "--multilabel", "car,bus,pedestrian", "--model", "mlp",
              "--epochs", "30", "--learning-rate", "0.01", "--calibrate", "-o", tmp_path / "m.ll")
    assert res.returncode == 0, res.stderr
    assert "log loss (mean binary)" in res.stdout and "ECE (15 bins)" in res.stdout
    _, _, arrays = load_estimator(tmp_path / "m.ll")
    assert arrays["temperature"].shape == (3,) and (arrays["temperature"] > 0).all()


def test_calibrate_refuses_resume_and_dask(calibrated, iris_csv, tmp_path):
    model, _ = calibrated
    one_line_error(run("train", iris_csv, "--target", "species", "--engine", "dask",
                       "--calibrate", "-o", tmp_path / "d.ll"), "--calibrate")
    one_line_error(run("train", iris_csv, "--resume", model, "--calibrate", "-o",
                       tmp_path / "r.ll"), "--resume")
