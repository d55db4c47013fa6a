"""``Sequential``'s model file: its state as JSON config plus arrays, and back.

The container (an uncompressed zip, written atomically, read without
executing anything) is ``logitlab._saving``; this module says what a
``Sequential`` puts in it. Layers, optimizers and losses are rebuilt by name
from fixed tables; a loss from the loss registry (``losses.get``), so a loss
defined outside logitlab loads once its class has been defined (imported).
"""

from __future__ import annotations

import numpy as np

from .. import losses as _losses
from .._saving import ModelFileError, read_model_file, write_model_file
from ..layers._layers import layer_from_config
from ..optimizers._optimizers import from_config as optimizer_from_config
from ._file_checks import SCALINGS as _SCALINGS
from ._file_checks import check_state

__all__ = ["KIND", "get_state", "from_state", "save", "load"]

KIND = "Sequential"

_METHODS = {cls: method for method, cls in _SCALINGS.items()}


def _jsonable_rng(state):
    return {k: (_jsonable_rng(v) if isinstance(v, dict)
                else int(v) if isinstance(v, (int, np.integer)) else v)
            for k, v in state.items()}


def get_state(model):
    """``(config, arrays)``: everything :func:`save` writes, JSON config plus arrays."""
    config = model.get_config()
    arrays = {f"w{i}": w for i, w in enumerate(model.trainable_weights)}
    if model.loss is not None:
        config["compile"] = {
            "loss": _losses.serialize(model.loss),
            "optimizer": {"class_name": type(model.optimizer).__name__,
                          "config": model.optimizer.get_config()},
            "metrics": [m for m in model.metrics if isinstance(m, str)],
        }
        state = model.optimizer.get_state()
        config["optimizer_state"] = {"iterations": state.pop("iterations"),
                                     "slots": {k: len(v) for k, v in state.items()}}
        for k, v in state.items():
            for i, a in enumerate(v):
                arrays[f"opt/{k}/{i}"] = a
    if model.calibration is not None:
        kind, params = model.calibration.get_fitted()
        config["calibration"] = {"method": _METHODS[type(model.calibration).__name__],
                                 "kind": kind}
        if hasattr(model.calibration, "C"):
            c = float(model.calibration.C)  # JSON has no inf: None is no penalty
            config["calibration"]["C"] = None if c == np.inf else c
        arrays.update({f"calibration/{k}": v for k, v in params.items()})
    if model.thresholds is not None:
        config["thresholds"] = True
        arrays["thresholds"] = np.asarray(model.thresholds, dtype=np.float64)
    config["training"] = {"epoch": model.epoch,
                          "rng_state": _jsonable_rng(model._rng.bit_generator.state)}
    return config, arrays


def _loss_from_spec(spec):
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
        raise ModelFileError("malformed loss entry")
    try:
        return _losses.get(spec)
    except ValueError as exc:
        if spec["class_name"] not in str(exc):
            raise
        raise ModelFileError(
            f"unknown loss {spec['class_name']!r}: a loss defined outside logitlab must be "
            "defined (its module imported) before the model is loaded"
        ) from None


def from_state(cls, config, arrays):
    """Rebuild a ``cls`` (a Sequential) from :func:`get_state` output (names only, nothing run).

    The contents are checked against each other first (:func:`check_state`), so
    nothing is built that the file's own arrays do not fill.
    """
    check_state(config, arrays)
    model = cls(
        [layer_from_config(spec["class_name"], spec["config"]) for spec in config["layers"]],
        name=config.get("name"), seed=config.get("seed"), dtype=config.get("dtype", "float32"))
    if config.get("input_dim") is not None:
        model.build(int(config["input_dim"]))
        model.set_weights([arrays[f"w{i}"] for i in range(len(model.trainable_weights))])
    comp = config.get("compile")
    if comp:
        model.compile(loss=_loss_from_spec(comp.get("loss")),
                      optimizer=optimizer_from_config(comp["optimizer"]["class_name"],
                                                      comp["optimizer"]["config"]),
                      metrics=comp.get("metrics"))
        ostate = config.get("optimizer_state")
        if ostate and model.built:
            state = {"iterations": ostate["iterations"]}
            for k, count in ostate["slots"].items():
                state[k] = [arrays[f"opt/{k}/{i}"] for i in range(int(count))]
            model.optimizer.set_state(state)
    cal = config.get("calibration")
    if cal is not None:
        from .. import calibration as _calibration  # checked by check_state already

        cls_ = getattr(_calibration, _SCALINGS[cal["method"]])
        init = {"C": np.inf if cal["C"] is None else cal["C"]} if "C" in cal else {}
        model.calibration = cls_.from_fitted(
            cal["kind"], model._output_dim(),
            {k[len("calibration/"):]: v for k, v in arrays.items()
             if k.startswith("calibration/")}, **init)
    if config.get("thresholds"):
        model.thresholds = np.array(arrays["thresholds"], dtype=np.float64)
    training = config.get("training") or {}
    model.epoch = int(training.get("epoch", 0))
    if "rng_state" in training:
        model._rng.bit_generator.state = training["rng_state"]
    return model


def save(model, path):
    """Write ``model``'s state to ``path``, atomically."""
    config, arrays = get_state(model)
    write_model_file(path, KIND, config, arrays)


def load(cls, path):
    """A ``cls`` read from a file :func:`save` wrote; any damage is a ModelFileError."""
    _, config, arrays = read_model_file(path, kinds={KIND})
    try:
        return from_state(cls, config, arrays)
    except ModelFileError as exc:
        raise ModelFileError(f"{path!r}: {exc}") from None
    except Exception as exc:  # a well-formed archive whose contents do not fit together
        raise ModelFileError(f"{path!r}: inconsistent model contents: {type(exc).__name__}: {exc}") \
            from None
