"""The classification problems the softmax-regression benchmarks share (same generators, same seeds)."""

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler


def dense_problem(n, p, k, dtype=np.float64):
    X, y = make_classification(n_samples=n, n_features=p, n_informative=int(0.6 * p),
                               n_classes=k, random_state=0)
    return StandardScaler().fit_transform(X).astype(dtype), y


def sparse_problem(n, p, k, density, seed=0):
    """Text-like: non-negative TF-IDF-like values, labels from a sparse linear model."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, p, density=density, format="csr", random_state=rng,
                  data_rvs=lambda m: rng.uniform(0.05, 1.0, m))
    W = rng.normal(size=(k, p)) * 2.0
    y = np.argmax(np.asarray(X @ W.T) + rng.gumbel(size=(n, k)), axis=1)
    return X, y
