"""Prediction CSVs are formula-safe (issue 19): a class name a spreadsheet would run as a
formula is written with a leading single quote, as OWASP advises."""

import csv
import io
import subprocess
import sys

import numpy as np

from logitlab.estimators import load_estimator


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "logitlab", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_issue19_class_names_in_prediction_csv_are_formula_safe(tmp_path):
    """Issue 19: class names starting with = + - @ (or tab / carriage return, OWASP's
    list) were written raw to prediction CSVs, where a spreadsheet runs them as formulas."""
    from sklearn.datasets import make_blobs

    labels = ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "plain"]
    X, y = make_blobs(n_samples=100, centers=len(labels), n_features=2, random_state=1,
                      cluster_std=0.3)
    data = tmp_path / "d.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "label"])
        w.writerows([[repr(float(a)), repr(float(b)), labels[t]] for (a, b), t in zip(X, y)])
    model = tmp_path / "m.logitlab"
    assert run_cli("train", data, "--target", "label", "-o", model).returncode == 0
    assert set(load_estimator(model)[0].classes_) == set(labels)
    out = tmp_path / "p.csv"
    res = run_cli("predict", model, data, "--proba", "-o", out)
    assert res.returncode == 0, res.stderr
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert {r[0] for r in rows[1:]} == {"'=HYPERLINK(\"http://x\")", "'+1+2", "'-2+3",
                                        "'@SUM(A1)", "plain"}
    for cell in [c for r in rows for c in r]:
        assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), cell


def test_numeric_class_labels_stay_numbers_in_prediction_csv(tmp_path):
    """A negative number is not a formula: labels -1 and 1 are written as they are."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=60, centers=2, n_features=2, random_state=2, cluster_std=0.3)
    data = tmp_path / "d.csv"
    np.savetxt(data, np.column_stack([X, 2 * y - 1]), delimiter=",", header="a,b,label",
               comments="", fmt=["%.17g", "%.17g", "%d"])
    model = tmp_path / "m.logitlab"
    assert run_cli("train", data, "--target", "label", "-o", model).returncode == 0
    res = run_cli("predict", model, data)
    assert res.returncode == 0, res.stderr
    written = set(res.stdout.split()[1:])
    assert written == {"-1", "1"}, written


def test_formula_safe_cells():
    from logitlab.cli._train import formula_safe

    for text, safe in [("=1+2", "'=1+2"), ("+x", "'+x"), ("-x", "'-x"), ("@x", "'@x"),
                       ("\tx", "'\tx"), ("\rx", "'\rx"), ("x=1", "x=1"), ("", ""),
                       ("-1", "-1"), ("+2.5", "+2.5"), ("-1e-3", "-1e-3"), ("-1+2", "'-1+2"),
                       ("-inf", "'-inf"), ("'=x", "'=x")]:
        assert formula_safe(text) == safe, text
    assert formula_safe(-3) == -3  # numbers are left to the CSV writer
    buf = io.StringIO()
    csv.writer(buf).writerow([formula_safe("=a,b")])
    assert buf.getvalue().strip() == "\"'=a,b\""
