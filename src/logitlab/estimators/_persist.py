"""Saving fitted estimators in the logitlab model file format (no pickle)."""

from __future__ import annotations

import json
import math

import numpy as np

from .._saving import ModelFileError, check_array, read_model_file, write_model_file
from .._softmax import sigmoid, softmax
from ..models import Sequential
from ..models._file_checks import check_state

__all__ = ["save_estimator", "load_estimator"]

_KINDS = {"SoftmaxRegression", "SoftmaxRegressionCV", "MLPClassifier"}
#: The kinds whose prediction is ``X @ coef.T + intercept`` (one column for two classes).
_LINEAR = {"SoftmaxRegression", "SoftmaxRegressionCV"}


def _estimator_class(kind):
    # imported here: the estimators import scikit-learn, which a predict-only load skips
    if kind == "SoftmaxRegression":
        from ._softmax_regression import SoftmaxRegression

        return SoftmaxRegression
    if kind == "SoftmaxRegressionCV":
        from ._softmax_regression_cv import SoftmaxRegressionCV

        return SoftmaxRegressionCV
    from ._mlp import MLPClassifier

    return MLPClassifier


class _Predictor:
    """The prediction half of a saved estimator, without scikit-learn.

    ``logitlab predict`` and ``evaluate`` load models as these: importing
    scikit-learn would take most of their time. The arithmetic is the
    estimators' own (``SoftmaxRegression.decision_function``: ``X @ coef.T +
    intercept``, one column for two classes; ``MLPClassifier``: the network's
    logits), and a test compares the two on every kind of model.
    """

    def __init__(self, kind):
        self.kind = kind

    def _logits(self, X):
        X = self._check_X(X)
        if self.kind in _LINEAR:  # sparse X: a dense product, X never densified
            return np.asarray(X @ self.coef_.T) + self.intercept_
        return self.model_.predict(X)

    def _check_X(self, X):
        """What the estimators' own ``predict`` checks, without scikit-learn: a DataFrame's
        column names against the fit's, numbers, the shape, finite values."""
        _check_feature_names(X, getattr(self, "feature_names_in_", None))
        if type(X).__module__.startswith("scipy.sparse"):  # told without importing scipy
            if self.kind not in _LINEAR:
                raise TypeError(f"`X` is a scipy.sparse matrix; an {self.kind} takes dense X "
                                "only (X.toarray(), if it fits in memory)")
            values = X.data
        else:
            arr = np.asarray(X)
            if arr.dtype.kind not in "biufO":  # strings: refused, as scikit-learn does
                raise TypeError(f"`X` must hold numbers; got an array of dtype {arr.dtype}")
            try:  # objects (a DataFrame of mixed or nullable columns): numbers if they are
                X = values = np.asarray(arr, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"`X` must hold numbers: {exc}") from None
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"`X` must have shape (n_samples, {self.n_features_in_}); "
                             f"got {X.shape}")
        if not np.isfinite(values).all():
            raise ValueError("`X` must be finite; it holds NaN or infinity")
        return X

    def decision_function(self, X):
        """The linear estimators' logits: shape (n_samples, n_classes), (n_samples,) for two."""
        if self.kind not in _LINEAR:
            raise AttributeError(f"an {self.kind} has no decision_function; its logits are "
                                 "model_.predict(X)")
        z = self._logits(X)
        return z[:, 0] if z.shape[1] == 1 else z

    def predict(self, X):
        z = self._logits(X)
        if self.kind == "MLPClassifier" and self._multilabel:
            if self.model_.thresholds is not None:  # MLPClassifier.set_thresholds
                return (sigmoid(z) >= self.model_.thresholds).astype(int)
            return (z > 0).astype(int)
        if self.kind in _LINEAR and z.shape[1] == 1:  # two classes: one logit
            return self.classes_[(z[:, 0] > 0).astype(int)]
        return self.classes_[np.argmax(z[:, :len(self.classes_)], axis=1)]

    def predict_proba(self, X):
        z = self._logits(X)
        if self.kind == "MLPClassifier" and self._multilabel:
            return sigmoid(z)
        if self.kind in _LINEAR and z.shape[1] == 1:
            return np.column_stack([sigmoid(-z[:, 0]), sigmoid(z[:, 0])])
        return softmax(z, axis=1)


_VALIDATION_CURVES = ("validation_scores", "validation_loss_curve")


def _check_feature_names(X, fitted):
    """scikit-learn's rule for a DataFrame's columns at predict (``validate_data``): the names
    the fit saw, in its order, else a ValueError; a warning where only one side has names."""
    columns = getattr(X, "columns", None)
    names = None
    if columns is not None and len(columns) and all(isinstance(c, str) for c in columns):
        names = [str(c) for c in columns]
    if names is None and fitted is None:
        return
    if names is None or fitted is None:
        import warnings

        warnings.warn("X does not have valid feature names, but the model was fitted with "
                      "feature names" if names is None else "X has feature names, but the "
                      "model was fitted without feature names", UserWarning, stacklevel=5)
        return
    fitted = [str(n) for n in fitted]
    if names != fitted:
        unexpected = [n for n in names if n not in fitted]
        missing = [n for n in fitted if n not in names]
        detail = ("in another order" if not unexpected and not missing else
                  "; ".join(part for part in (
                      f"unseen at fit: {', '.join(unexpected[:8])}" if unexpected else "",
                      f"seen at fit, missing: {', '.join(missing[:8])}" if missing else "")
                      if part))
        raise ValueError(f"The feature names of `X` should match those that were passed "
                         f"during fit: {detail}")


def _floats(value, name):
    """A list of finite numbers from a model file's config, or a ModelFileError naming it."""
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value):
        raise ModelFileError(f"`{name}` must be a list of finite numbers; got {value!r:.80}")
    return [float(v) for v in value]


_ITEMS = "__dict_items__"  # a dict whose keys are not all strings, as [key, value] pairs


def _jsonable(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (np.ndarray, tuple)):
        v = list(v) if isinstance(v, tuple) else v.tolist()
    if isinstance(v, list):
        return [_jsonable(u) for u in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v) and _ITEMS not in v:
            return {k: _jsonable(u) for k, u in v.items()}
        # JSON's keys are strings: {0: 2.0} (a class_weight) would come back as {"0": 2.0}
        return {_ITEMS: [[_jsonable(k), _jsonable(u)] for k, u in v.items()]}
    if isinstance(v, float) and not math.isfinite(v):
        # JSON has no inf (the file is written with allow_nan=False): C=np.inf is tagged
        return {"nonfinite": repr(v)}
    return v


def _from_json(v):
    """:func:`_jsonable`'s inverse for parameter values: the tagged non-finite floats."""
    if isinstance(v, list):
        return [_from_json(u) for u in v]
    if isinstance(v, dict) and len(v) == 1 and v.get("nonfinite") in ("inf", "-inf", "nan"):
        return float(v["nonfinite"])
    if isinstance(v, dict) and len(v) == 1 and isinstance(v.get(_ITEMS), list):
        if not all(isinstance(kv, list) and len(kv) == 2 for kv in v[_ITEMS]):
            raise ModelFileError(f"a parameter's {_ITEMS!r} must be a list of [key, value] pairs")
        return {_hashable(_from_json(k)): _from_json(u) for k, u in v[_ITEMS]}
    if isinstance(v, dict):
        return {k: _from_json(u) for k, u in v.items()}
    return v


def _hashable(key):
    """A dict key read back: a list (a tuple written) becomes a tuple again."""
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        raise ModelFileError("a parameter's dict key in the model file is a dict")
    return key


def _params(estimator):
    """``get_params()`` as JSON values; a value the file cannot hold is refused, named."""
    # callbacks are objects with code, never written (a loaded estimator has callbacks=None)
    params = {k: _jsonable(v) for k, v in estimator.get_params().items() if k != "callbacks"}
    if not isinstance(params.get("random_state"), (int, type(None))):
        params["random_state"] = None
    for name, value in params.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise TypeError(
                f"cannot save a {type(estimator).__name__} whose `{name}` is "
                f"{type(value).__name__} {value!r:.80}: a model file holds numbers, strings, "
                f"lists and dicts of them; set_params({name}=...) to such a value first"
            ) from None
    return params


def save_estimator(estimator, path, extra=None, extra_arrays=None):
    """Write a fitted estimator (and caller's extras) to ``path`` atomically."""
    kind = type(estimator).__name__
    if kind not in _KINDS:
        raise TypeError(f"cannot save a {kind}; expected one of {sorted(_KINDS)}")
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "classes_")  # scikit-learn's NotFittedError, naming fit
    config = {"params": _params(estimator), "classes": _jsonable(estimator.classes_),
              "classes_dtype": _classes_dtype(estimator.classes_),
              "n_features_in": int(estimator.n_features_in_), "extra": extra or {}}
    if hasattr(estimator, "feature_names_in_"):
        config["feature_names_in"] = _jsonable(estimator.feature_names_in_)
    arrays = {f"extra/{k}": np.asarray(v) for k, v in (extra_arrays or {}).items()}
    if kind in _LINEAR:
        arrays["coef"] = estimator.coef_
        arrays["intercept"] = estimator.intercept_
        if kind == "SoftmaxRegressionCV":  # the grid and the choice; not the path and scores
            arrays["Cs"] = np.asarray(estimator.Cs_, dtype=np.float64)
            arrays["C"] = np.array([estimator.C_], dtype=np.float64)
    else:
        config["multilabel"] = bool(estimator._multilabel)
        config["loss_curve"] = [float(v) for v in estimator.loss_curve_]
        for name in _VALIDATION_CURVES:  # None without early stopping
            value = getattr(estimator, name + "_", None)
            config[name] = None if value is None else [float(v) for v in value]
        best = getattr(estimator, "best_validation_score_", None)
        config["best_validation_score"] = None if best is None else float(best)
        # the whole network: weights, optimizer state, epoch and shuffling state (for --resume)
        config["network"], net_arrays = estimator.model_.get_state()
        arrays.update({f"net/{k}": v for k, v in net_arrays.items()})
    write_model_file(path, kind, config, arrays)


#: The dtypes a model file's classes may come back as, by NumPy's kind letter.
_CLASS_KINDS = {"b": "booleans", "i": "integers", "u": "unsigned integers", "f": "floats",
                "U": "strings", "O": "objects"}


def _classes_dtype(classes):
    """``classes_``'s dtype as a model file keeps it (``"<u8"``, ``"<U6"``, ``"|O"``...)."""
    dtype = np.asarray(classes).dtype
    if dtype.kind not in _CLASS_KINDS:
        raise TypeError(f"cannot save classes of dtype {dtype}; a model file keeps "
                        f"{', '.join(_CLASS_KINDS.values())}")
    return dtype.str


def _classes_array(classes, dtype, where):
    """The classes as the estimator had them: the file's labels (JSON keeps integers of any
    size exactly) in the saved dtype. Files without a dtype (written before it was kept) get
    NumPy's, unless that merges labels (integers past 2**63 or float64's 2**53): objects."""
    try:
        if dtype is None:
            try:
                arr = np.asarray(classes)
            except OverflowError:  # integers beyond both int64 and uint64
                arr = None
            if arr is None or arr.tolist() != classes:
                arr = np.empty(len(classes), dtype=object)
                arr[:] = classes
        else:
            if not isinstance(dtype, str) or np.dtype(dtype).kind not in _CLASS_KINDS:
                raise ValueError(f"'classes_dtype' must name one of "
                                 f"{', '.join(_CLASS_KINDS.values())}; got {dtype!r:.40}")
            need = np.asarray(classes).dtype  # what the labels take: no more may be asked
            if np.dtype(dtype).kind in "U" and np.dtype(dtype).itemsize > max(
                    need.itemsize if need.kind == "U" else 0, 4):
                raise ValueError(f"'classes_dtype' {dtype!r:.40} is wider than its labels")
            if np.dtype(dtype).kind in "biuf" and np.dtype(dtype).itemsize > 16:
                raise ValueError(f"'classes_dtype' {dtype!r:.40} is no dtype of labels")
            if np.dtype(dtype).kind == "O":
                arr = np.empty(len(classes), dtype=object)
                arr[:] = classes
            else:
                arr = np.array(classes, dtype=dtype)
                if arr.tolist() != classes:
                    raise ValueError(f"the classes do not fit dtype {dtype}")
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    return arr


def _check_classes(config, where):
    classes = config.get("classes")
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, (str, int, float)) for c in classes)):
        raise ModelFileError(f"{where}: 'classes' must be a non-empty list of labels")
    seen = set()
    for c in classes:
        if c in seen:
            raise ModelFileError(f"{where}: the classes must be distinct; {c!r} appears twice")
        seen.add(c)
    _classes_array(classes, config.get("classes_dtype"), where)
    n_features = config.get("n_features_in")
    if type(n_features) is not int or n_features < 1:
        raise ModelFileError(f"{where}: 'n_features_in' must be a positive integer; "
                             f"got {n_features!r}")
    names = config.get("feature_names_in")
    if names is not None and (not isinstance(names, list) or len(names) != n_features
                              or not all(isinstance(n, str) for n in names)):
        raise ModelFileError(f"{where}: 'feature_names_in' must be {n_features} names")
    return classes, n_features


def _check_contents(kind, config, arrays, where):
    """Every array's shape and values against the config, before any object is made."""
    classes, n_features = _check_classes(config, where)
    if kind in _LINEAR:
        if len(classes) < 2:
            raise ModelFileError(f"{where}: a {kind} has at least 2 classes; the "
                                 f"file lists {len(classes)}")
        rows = 1 if len(classes) == 2 else len(classes)  # one row of logits for two classes
        check_array(arrays, "coef", (rows, n_features), where)
        check_array(arrays, "intercept", (rows,), where)
        used = {"coef", "intercept"}
        if kind == "SoftmaxRegressionCV":  # C = inf (no penalty) is a valid grid point
            cs = arrays.get("Cs")
            if cs is not None and (cs.ndim != 1 or cs.size == 0):
                raise ModelFileError(f"{where}: array 'Cs' must be a non-empty 1-D grid; the "
                                     f"file holds shape {tuple(cs.shape)}")
            check_array(arrays, "Cs", (0,) if cs is None else cs.shape, where, finite=False,
                        positive=True)
            check_array(arrays, "C", (1,), where, finite=False, positive=True)
            used |= {"Cs", "C"}
    else:
        network = config.get("network")
        multilabel = config.get("multilabel")
        if not isinstance(network, dict) or not isinstance(multilabel, bool):
            raise ModelFileError(f"{where}: an MLPClassifier file needs 'network' and 'multilabel'")
        net = {k[4:]: v for k, v in arrays.items() if k.startswith("net/")}
        try:
            check_state(network, net, prefix="net/")
        except ModelFileError as exc:
            raise ModelFileError(f"{where}: {exc}") from None
        used = {f"net/{k}" for k in net}
        curve = config.get("loss_curve", [])
        if not isinstance(curve, list) or not all(isinstance(v, (int, float)) for v in curve):
            raise ModelFileError(f"{where}: 'loss_curve' must be a list of numbers")
    for name in arrays:
        if name not in used and not name.startswith("extra/"):
            raise ModelFileError(f"{where}: unexpected array {name!r}")


def _check_network(est, where):
    """The rebuilt network takes the estimator's features and gives one output per class."""
    model = est.model_
    if model.input_dim != est.n_features_in_:
        raise ModelFileError(f"{where}: the network takes {model.input_dim} features but "
                             f"n_features_in is {est.n_features_in_}")
    outputs = est.n_outputs_ if est._multilabel else max(est.n_outputs_, 2)
    if model._output_dim() != outputs:
        raise ModelFileError(f"{where}: the network has {model._output_dim()} outputs; "
                             f"{len(est.classes_)} classes need {outputs}")
    if model.loss is None:
        raise ModelFileError(f"{where}: the network is not compiled")


def load_estimator(path, *, predict_only=False):
    """Read an estimator written by :func:`save_estimator`.

    Returns ``(estimator, extra, extra_arrays)``; raises
    :class:`~logitlab.ModelFileError` for anything that is not such a file, or
    whose contents do not fit together: every array's shape against the classes
    and features, every value finite, the parameters valid, the network's
    architecture against its arrays (before it is built). With
    ``predict_only``, the estimator is a light object with the fitted
    attributes, ``predict`` and ``predict_proba``, and scikit-learn is not
    imported (nor are the parameters, which prediction does not use, checked).
    """
    kind, config, arrays = read_model_file(path, kinds=set(_KINDS))
    where = repr(str(path))
    _check_contents(kind, config, arrays, where)
    try:
        if predict_only:
            est = _Predictor(kind)
        else:
            est = _estimator_class(kind)(**{k: _from_json(v)
                                            for k, v in config["params"].items()})
            est._validate_params()  # scikit-learn's parameter constraints, at load not next fit
    except Exception as exc:
        raise ModelFileError(f"{where}: invalid parameters: {type(exc).__name__}: {exc}") \
            from None
    try:
        est.classes_ = _classes_array(config["classes"], config.get("classes_dtype"), where)
        est.n_features_in_ = int(config["n_features_in"])
        if "feature_names_in" in config:
            est.feature_names_in_ = np.asarray(config["feature_names_in"], dtype=object)
        if kind == "SoftmaxRegression":
            est.coef_, est.intercept_ = arrays["coef"], arrays["intercept"]
            est.n_iter_ = np.array([0], dtype=np.int32)
        elif kind == "SoftmaxRegressionCV":
            est.coef_, est.intercept_ = arrays["coef"], arrays["intercept"]
            est.Cs_, est.C_ = arrays["Cs"], float(arrays["C"][0])
        else:
            est._multilabel = bool(config["multilabel"])
            est.n_outputs_ = len(est.classes_)
            est.model_ = Sequential.from_state(
                config["network"], {k[4:]: v for k, v in arrays.items() if k.startswith("net/")})
            _check_network(est, where)
            est.loss_curve_ = _floats(config.get("loss_curve", []), "loss_curve")
            est.n_iter_ = len(est.loss_curve_)
            for name in _VALIDATION_CURVES:  # files written before them hold none: None
                value = config.get(name)
                setattr(est, name + "_", None if value is None else _floats(value, name))
            best = config.get("best_validation_score")
            est.best_validation_score_ = (None if best is None
                                          else _floats([best], "best_validation_score")[0])
        extra_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("extra/")}
        return est, dict(config.get("extra") or {}), extra_arrays
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: {exc}" if where not in str(exc) else str(exc)) from None
    except Exception as exc:
        raise ModelFileError(f"{where}: inconsistent model contents: {type(exc).__name__}: {exc}") \
            from None
