"""Saving fitted estimators in the logitlab model file format (no pickle)."""

from __future__ import annotations

import numpy as np

from .._saving import ModelFileError, read_model_file, write_model_file
from ..models import Sequential
from ._mlp import MLPClassifier
from ._softmax_regression import SoftmaxRegression

__all__ = ["save_estimator", "load_estimator"]

_KINDS = {"SoftmaxRegression": SoftmaxRegression, "MLPClassifier": MLPClassifier}


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    return v


def save_estimator(estimator, path, extra=None, extra_arrays=None):
    """Write a fitted estimator (and caller's extras) to ``path`` atomically."""
    kind = type(estimator).__name__
    if kind not in _KINDS:
        raise TypeError(f"cannot save a {kind}; expected one of {sorted(_KINDS)}")
    params = {k: _jsonable(v) for k, v in estimator.get_params().items()}
    if not isinstance(params.get("random_state"), (int, type(None))):
        params["random_state"] = None
    config = {"params": params, "classes": _jsonable(estimator.classes_),
              "n_features_in": int(estimator.n_features_in_), "extra": extra or {}}
    if hasattr(estimator, "feature_names_in_"):
        config["feature_names_in"] = _jsonable(estimator.feature_names_in_)
    arrays = {f"extra/{k}": np.asarray(v) for k, v in (extra_arrays or {}).items()}
    if kind == "SoftmaxRegression":
        arrays["coef"] = estimator.coef_
        arrays["intercept"] = estimator.intercept_
    else:
        config["multilabel"] = bool(estimator._multilabel)
        config["loss_curve"] = [float(v) for v in estimator.loss_curve_]
        # the whole network: weights, optimizer state, epoch and shuffling state (for --resume)
        config["network"], net_arrays = estimator.model_.get_state()
        arrays.update({f"net/{k}": v for k, v in net_arrays.items()})
    write_model_file(path, kind, config, arrays)


def load_estimator(path):
    """Read an estimator written by :func:`save_estimator`.

    Returns ``(estimator, extra, extra_arrays)``; raises
    :class:`~logitlab.ModelFileError` for anything that is not such a file.
    """
    kind, config, arrays = read_model_file(path, kinds=set(_KINDS))
    try:
        est = _KINDS[kind](**config["params"])
        est.classes_ = np.asarray(config["classes"])
        est.n_features_in_ = int(config["n_features_in"])
        if "feature_names_in" in config:
            est.feature_names_in_ = np.asarray(config["feature_names_in"], dtype=object)
        if kind == "SoftmaxRegression":
            est.coef_, est.intercept_ = arrays["coef"], arrays["intercept"]
            est.n_iter_ = np.array([0], dtype=np.int32)
        else:
            est._multilabel = bool(config["multilabel"])
            est.n_outputs_ = len(est.classes_)
            est.model_ = Sequential.from_state(
                config["network"], {k[4:]: v for k, v in arrays.items() if k.startswith("net/")})
            est.loss_curve_ = list(config.get("loss_curve", []))
            est.n_iter_ = len(est.loss_curve_)
        extra_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("extra/")}
        return est, dict(config.get("extra") or {}), extra_arrays
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{path!r}: inconsistent model contents: {type(exc).__name__}: {exc}") \
            from None
