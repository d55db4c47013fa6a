"""A Sequential model file's contents, checked before anything is built.

The architecture in a file's JSON is data a person can edit: ``input_dim = units =
20000`` once made ``load_model`` allocate 4.6 GB (a 20000 x 20000 kernel) before
it noticed that the file held a 4 x 6 one. Here the declared shapes are worked out
with integers alone (:meth:`Layer.weight_shapes`) and compared with the arrays the
file actually holds, so loading never allocates more than the file's own arrays.
"""

from __future__ import annotations

import math

import numpy as np

from .._saving import ModelFileError, check_array
from ..layers._layers import layer_from_config
from ..optimizers._optimizers import from_config as optimizer_from_config

__all__ = ["check_state", "SCALINGS"]

#: ``Sequential.calibrate``'s methods and the scalings (``logitlab.calibration``) they fit
SCALINGS = {"temperature": "TemperatureScaling", "vector": "VectorScaling",
            "matrix": "MatrixScaling"}

# running means of squared gradients: a negative one makes sqrt() NaN at the next step
_SQUARED_SLOTS = {"velocities", "velocity_hats"}


def _integer(value, what, low):
    if type(value) is not int or value < low:
        raise ModelFileError(f"{what} must be an integer >= {low}; got {value!r}")
    return value


def _layers(config):
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ModelFileError("the config holds no list of layers")
    layers = []
    for i, spec in enumerate(config["layers"]):
        if (not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str)
                or not isinstance(spec.get("config"), dict)):
            raise ModelFileError(f"layer {i} of the config is malformed")
        try:  # constructors validate their arguments and allocate nothing
            layers.append(layer_from_config(spec["class_name"], spec["config"]))
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"layer {i} of the config: {exc}") from None
    return layers


def check_state(config, arrays, prefix=""):
    """Check :meth:`Sequential.get_state` output read from a file, before building.

    * every weight the layers declare for the declared ``input_dim`` is the array
      of that name in the file, of that shape, of the model's dtype and finite;
    * first of all, the declared parameters must fit in the bytes of the arrays the
      file holds (so a header declaring billions of parameters fails at once);
    * the optimizer's slots are the ones its class and settings use, each of the
      model's flat parameter vector's shape and dtype, finite (and not negative
      where they are means of squares);
    * no array goes unused.

    ``prefix`` is how the file names the arrays (``"net/"`` inside an estimator
    file), for the messages. Raises :class:`~logitlab.ModelFileError`.
    """
    layers = _layers(config)
    dtype = config.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"the config's dtype must be 'float32' or 'float64'; got {dtype!r}")
    dtype = np.dtype(dtype)
    expected = []  # (array name, shape, what it is)
    if config.get("input_dim") is not None:
        dim = _integer(config["input_dim"], "the config's input_dim", 1)
        for i, layer in enumerate(layers):
            for what, shape in layer.weight_shapes(dim):
                expected.append((f"w{len(expected)}", shape,
                                 f"layer {i} ({type(layer).__name__}) {what}"))
            dim = layer.output_dim(dim)
    total = sum(math.prod(shape) for _, shape, _ in expected)
    held = sum(a.nbytes for a in arrays.values())
    if total * dtype.itemsize > held:
        raise ModelFileError(
            f"the config declares {total:,} parameters ({total * dtype.itemsize:,} bytes of "
            f"{dtype.name}) but the file holds {held:,} bytes of arrays"
        )
    for name, shape, what in expected:
        check_array(arrays, name, shape, what, dtype=dtype, label=prefix + name)
    used = {name for name, _, _ in expected}
    used |= _check_optimizer(config, arrays, prefix, dtype, total,
                             built=config.get("input_dim") is not None)
    used |= _check_calibration(config, arrays, prefix, layers, total)
    training = config.get("training") or {}
    if not isinstance(training, dict):
        raise ModelFileError("the config's training state is malformed")
    _integer(training.get("epoch", 0), "the training epoch", 0)
    for name in arrays:
        if name not in used:
            raise ModelFileError(f"unexpected array {prefix + name!r}: the model does not use it")


def _check_optimizer(config, arrays, prefix, dtype, total, built):
    comp = config.get("compile")
    if comp is None:
        return set()
    if (not isinstance(comp, dict) or not isinstance(comp.get("optimizer"), dict)
            or not isinstance(comp.get("loss"), dict)):
        raise ModelFileError("the config's compile settings are malformed")
    spec = comp["optimizer"]
    try:
        optimizer = optimizer_from_config(spec.get("class_name"), spec.get("config") or {})
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"the optimizer: {exc}") from None
    ostate = config.get("optimizer_state")
    if ostate is None or not built:
        return set()
    if not isinstance(ostate, dict) or not isinstance(ostate.get("slots"), dict):
        raise ModelFileError("the config's optimizer_state is malformed")
    _integer(ostate.get("iterations"), "the optimizer's iterations", 0)
    cls = type(optimizer).__name__
    active = list(optimizer._active_slots())
    if sorted(ostate["slots"]) != sorted(active):
        raise ModelFileError(f"optimizer_state lists slots {sorted(ostate['slots'])}; {cls} "
                             f"with these settings uses {sorted(active)}")
    # the optimizer updates one flat vector of all parameters (Sequential._flatten_weights)
    flat_shapes = [(total,)]
    used = set()
    for slot in active:
        if type(ostate["slots"][slot]) is not int or ostate["slots"][slot] != len(flat_shapes):
            raise ModelFileError(f"optimizer slot {slot!r} must hold {len(flat_shapes)} "
                                 f"array(s); the config says {ostate['slots'][slot]!r}")
        for i, shape in enumerate(flat_shapes):
            name = f"opt/{slot}/{i}"
            check_array(arrays, name, shape, f"{cls} slot {slot!r}", dtype=dtype,
                        nonnegative=slot in _SQUARED_SLOTS, label=prefix + name)
            used.add(name)
    return used


def _output_dim(config, layers):
    dim = config["input_dim"]
    for layer in layers:
        dim = layer.output_dim(dim)
    return dim


def _check_calibration(config, arrays, prefix, layers, total):
    """The calibration (``Sequential.calibrate``) and thresholds (``set_thresholds``):
    each array of the shape the model's outputs give it, float64, finite (thresholds
    may be +inf: never predicted), temperatures > 0."""
    used = set()
    cal = config.get("calibration")
    thresholds = config.get("thresholds")
    if (cal is not None or thresholds is not None) and config.get("input_dim") is None:
        raise ModelFileError("the config has a calibration or thresholds but no weights")
    if cal is not None:
        if not isinstance(cal, dict) or cal.get("method") not in SCALINGS:
            raise ModelFileError(f"the config's calibration must name a method among "
                                 f"{sorted(SCALINGS)}; got {cal!r}"[:300])
        k = _output_dim(config, layers)
        kind = cal.get("kind")
        allowed = ("binary",) if k == 1 else ("multiclass", "multilabel")
        if kind not in allowed:
            raise ModelFileError(f"the calibration's kind must be one of {allowed} for a model "
                                 f"of {k} output(s); got {kind!r}")
        from .. import calibration as _calibration

        scaling = getattr(_calibration, SCALINGS[cal["method"]])
        expected = {"method", "kind"} | ({"C"} if cal["method"] == "matrix" else set())
        if set(cal) != expected:
            raise ModelFileError(f"the calibration entry must hold {sorted(expected)}; "
                                 f"it holds {sorted(cal)}")
        if "C" in cal and cal["C"] is not None and not (
                isinstance(cal["C"], float) and math.isfinite(cal["C"]) and cal["C"] > 0):
            raise ModelFileError(f"the calibration's C must be a finite number > 0 or null; "
                                 f"got {cal['C']!r}")
        for name, shape in scaling.fitted_shapes(kind, k).items():
            label = f"calibration/{name}"
            check_array(arrays, label, shape, f"the {cal['method']} scaling's {name}",
                        dtype=np.float64, positive=name == "temperature", label=prefix + label)
            used.add(label)
    if thresholds is not None:
        if thresholds is not True:
            raise ModelFileError(f"the config's thresholds entry must be true; got {thresholds!r}")
        k = _output_dim(config, layers)
        t = check_array(arrays, "thresholds", (k,), "the multilabel thresholds",
                        dtype=np.float64, finite=False, label=prefix + "thresholds")
        if np.isnan(t).any() or (t == -np.inf).any():
            raise ModelFileError(f"the multilabel thresholds: array {prefix + 'thresholds'!r} "
                                 "holds NaN or -inf")
        used.add("thresholds")
    return used
