"""Training metrics; "accuracy" is the one the loss declares (its ``metric()``), as Keras
chooses it from the loss."""

from __future__ import annotations

import numpy as np


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


_BY_NAME = {
    "sparse_categorical_accuracy": _sparse_accuracy,
    "categorical_accuracy": _categorical_accuracy,
    "binary_accuracy": _binary_accuracy,
}


def resolve_metrics(metrics, loss):
    """``[(name, fn(y_true, y_pred, loss) -> float)]`` from names or callables."""
    out = []
    for m in metrics or []:
        if callable(m):
            name = getattr(m, "__name__", type(m).__name__)
            out.append((name, lambda yt, yp, loss, f=m: f(yt, yp)))
        elif m in ("accuracy", "acc"):
            declared = loss.metric()
            if declared not in _BY_NAME:
                raise ValueError(
                    f"{type(loss).__name__}.default_metric must be one of {sorted(_BY_NAME)}; "
                    f"got {declared!r}"
                )
            out.append(("accuracy", _BY_NAME[declared]))
        elif m in _BY_NAME:
            out.append((m, _BY_NAME[m]))
        elif m == "top_k_accuracy":
            out.append(("top_k_accuracy", _top_k(5)))
        elif isinstance(m, str) and m.startswith("top_") and m.endswith("_accuracy") \
                and m[4:-9].isdigit():
            out.append((m, _top_k(int(m[4:-9]))))
        else:
            raise ValueError(
                "`metrics` entries must be 'accuracy', 'top_k_accuracy', 'top_<k>_accuracy', "
                f"one of {sorted(_BY_NAME)} or a callable f(y_true, y_pred); got {m!r}"
            )
    return out
