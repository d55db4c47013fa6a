"""Temperature, vector and matrix scaling of an over-fitted MLP on scikit-learn's digits.

    python examples/calibration_digits.py [--out-dir DIR] [--seed N]

Splits digits (1,797 images) into train (10 %, 179 images), calibration (45 %) and
test (45 %), stratified; trains logitlab's MLPClassifier with one hidden layer of 256
units for 200 epochs and no regularisation (100 % training accuracy from early on,
after which the logits only grow); fits each scaling on the calibration split's
logits; and reports the test split's NLL, ECE (15 uniform bins, top-label), Brier
score and accuracy before and after. It also fits scikit-learn's
``CalibratedClassifierCV(FrozenEstimator(...), method="temperature")`` on the same
calibration logits and prints how far its temperature and probabilities are from
logitlab's. Writes ``reliability_digits.png`` (before / after temperature scaling)
into ``--out-dir`` (default: the current folder).
"""

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from logitlab import MLPClassifier, softmax
from logitlab.calibration import MatrixScaling, TemperatureScaling, VectorScaling
from logitlab.metrics import (
    brier_score,
    expected_calibration_error,
    log_loss_from_logits,
    plot_reliability_diagram,
)


class _Logits(ClassifierMixin, BaseEstimator):
    """A classifier whose input is already its logits (for scikit-learn's calibration)."""

    def fit(self, z, y):
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, z):
        return np.asarray(z, dtype=np.float64)

    def predict(self, z):
        return self.classes_[np.argmax(z, axis=1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=float, default=0.1)
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(
        X, y, train_size=args.train_size, stratify=y, random_state=args.seed)
    X_cal, X_test, y_cal, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=args.seed)
    scaler = StandardScaler().fit(X_train)
    X_train, X_cal, X_test = (scaler.transform(a) for a in (X_train, X_cal, X_test))

    start = time.perf_counter()
    mlp = MLPClassifier(hidden_layer_sizes=(256,), epochs=200, alpha=0.0,
                        n_iter_no_change=200, random_state=args.seed).fit(X_train, y_train)
    print(f"MLP (256,), 200 epochs, alpha=0: trained in {time.perf_counter() - start:.1f} s, "
          f"{mlp.n_iter_} epochs, train accuracy {mlp.score(X_train, y_train):.4f}")
    # the raw logits (Sequential.predict returns them), in float64; not predict_log_proba:
    # its per-row shift is invisible to temperature scaling but not to vector or matrix
    z_cal, z_test = (mlp.model_.predict(a).astype(np.float64) for a in (X_cal, X_test))

    rows = [("uncalibrated", z_test)]
    fitted = {}
    for name, s in (("temperature", TemperatureScaling()), ("vector", VectorScaling()),
                    ("matrix (C=1)", MatrixScaling(C=1.0))):
        fitted[name] = s.fit(z_cal, y_cal)
        rows.append((name, s.transform(z_test)))

    print(f"\ntest split ({len(y_test)} samples); scalings fitted on the calibration split "
          f"({len(y_cal)} samples)")
    header = f"{'':<14}{'NLL':>9}{'ECE':>9}{'Brier':>9}{'accuracy':>10}"
    print(header)
    print("-" * len(header))
    table = {}
    for name, z in rows:
        p = softmax(z, axis=1)
        table[name] = (log_loss_from_logits(y_test, z), expected_calibration_error(y_test, p),
                       brier_score(y_test, p), np.mean(p.argmax(axis=1) == y_test))
        print(f"{name:<14}" + "".join(f"{v:>9.4f}" for v in table[name][:3])
              + f"{table[name][3]:>10.4f}")
    t = fitted["temperature"].temperature_
    print(f"\nfitted temperature T = {t:.6f}")
    nll_ratio = table["temperature"][0] / table["uncalibrated"][0]
    ece_ratio = table["temperature"][1] / table["uncalibrated"][1]
    print(f"temperature scaling: NLL x{nll_ratio:.3f}, ECE x{ece_ratio:.3f} "
          f"({'at least halved' if ece_ratio <= 0.5 else 'NOT halved'})")

    # scikit-learn on the same float64 logits, through a decision_function (given
    # MLPClassifier itself it would use predict_proba, in float32, and log(p + 1e-12))
    logits = _Logits().fit(z_cal, y_cal)
    sk = CalibratedClassifierCV(FrozenEstimator(logits), method="temperature").fit(z_cal, y_cal)
    sk_t = 1 / float(sk.calibrated_classifiers_[0].calibrators[0].beta_)
    ours = fitted["temperature"].predict_proba(z_test)
    print(f"scikit-learn CalibratedClassifierCV(method='temperature'): T = {sk_t:.6f} "
          f"(relative difference {abs(t / sk_t - 1):.1e}); largest probability difference "
          f"on the test split {np.abs(ours - sk.predict_proba(z_test)).max():.1e}")

    import matplotlib

    matplotlib.use("Agg")
    fig = plot_reliability_diagram(y_test, {"before": softmax(z_test, axis=1),
                                            f"after (T = {t:.2f})": ours})
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "reliability_digits.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
