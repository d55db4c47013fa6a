"""Multinomial softmax regression against one-vs-rest, on scikit-learn's digits.

    python examples/ovr_vs_softmax.py

One-vs-rest is scikit-learn's OneVsRestClassifier wrapped around
SoftmaxRegression (each of the 10 binary problems is then plain logistic
regression); its probabilities are the 10 sigmoids renormalised to sum to 1.
"""

from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from logitlab import SoftmaxRegression
from logitlab.metrics import brier_score, expected_calibration_error


def main():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    models = {
        "softmax (multinomial)": make_pipeline(StandardScaler(), SoftmaxRegression(C=0.1)),
        "one-vs-rest": make_pipeline(StandardScaler(), OneVsRestClassifier(SoftmaxRegression(C=0.1))),
    }
    print("| model | test accuracy | test log loss | Brier score | expected calibration error |")
    print("|---|---|---|---|---|")
    for name, model in models.items():
        proba = model.fit(X_tr, y_tr).predict_proba(X_te)
        print(f"| {name} | {accuracy_score(y_te, proba.argmax(1)):.4f} | "
              f"{log_loss(y_te, proba):.4f} | {brier_score(y_te, proba):.4f} | "
              f"{expected_calibration_error(y_te, proba, n_bins=10):.4f} |")


if __name__ == "__main__":
    main()
