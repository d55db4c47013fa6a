"""Training metrics, chosen from the loss as Keras does."""

from __future__ import annotations

import numpy as np

from ..losses import BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy


def _sparse_accuracy(y_true, y_pred, loss):
    return np.mean(np.argmax(y_pred, axis=-1) == y_true)


def _categorical_accuracy(y_true, y_pred, loss):
    return np.mean(np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1))


def _binary_accuracy(y_true, y_pred, loss):
    # a logit of 0 is a probability of 0.5: threshold where the output means 0.5
    threshold = 0.0 if getattr(loss, "from_logits", False) else 0.5
    return np.mean((y_pred > threshold) == (y_true > 0.5))


def _top_k(k):
    def top_k_accuracy(y_true, y_pred, loss):
        kk = min(k, y_pred.shape[-1])
        top = np.argpartition(-y_pred, kk - 1, axis=-1)[..., :kk]
        labels = y_true if y_true.ndim == y_pred.ndim - 1 else np.argmax(y_true, axis=-1)
        return np.mean(np.any(top == labels[..., None], axis=-1))
    return top_k_accuracy


def resolve_metrics(metrics, loss):
    """``[(name, fn(y_true, y_pred, loss) -> float)]`` from names or callables."""
    out = []
    for m in metrics or []:
        if callable(m):
            name = getattr(m, "__name__", type(m).__name__)
            out.append((name, lambda yt, yp, loss, f=m: f(yt, yp)))
        elif m in ("accuracy", "acc"):
            if isinstance(loss, SparseCategoricalCrossentropy):
                out.append(("accuracy", _sparse_accuracy))
            elif isinstance(loss, CategoricalCrossentropy):
                out.append(("accuracy", _categorical_accuracy))
            elif isinstance(loss, BinaryCrossentropy):
                out.append(("accuracy", _binary_accuracy))
        elif m == "top_k_accuracy":
            out.append(("top_k_accuracy", _top_k(5)))
        elif isinstance(m, str) and m.startswith("top_") and m.endswith("_accuracy") \
                and m[4:-9].isdigit():
            out.append((m, _top_k(int(m[4:-9]))))
        else:
            raise ValueError(
                "`metrics` entries must be 'accuracy', 'top_k_accuracy', 'top_<k>_accuracy' "
                f"or a callable f(y_true, y_pred); got {m!r}"
            )
    return out
