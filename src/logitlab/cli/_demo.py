"""``logitlab demo``: the seeds' lab, told in the terminal and in pictures."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import logitlab as ll
from logitlab import _jit
from logitlab.losses import sparse_categorical_crossentropy


def my_softmax(z):
    """The seeds' naive softmax: exp, then divide. Overflows for large z."""
    ez = np.exp(z)
    return ez / np.sum(ez)


def show_overflow(console: Console):
    z = np.array([1000.0, 1001.0, 1002.0])
    with np.errstate(over="ignore", invalid="ignore"):
        naive = my_softmax(z)
    table = Table(title="softmax of z = [1000, 1001, 1002]")
    table.add_column("computation")
    table.add_column("result")
    table.add_row("naive my_softmax: exp(z) / sum(exp(z))", escape(str(naive)))
    table.add_row("logitlab.softmax (shift by the max)",
                  escape(np.array2string(ll.softmax(z), precision=8)))
    console.print(table)


def show_losses(console: Console):
    logits = np.array([[1000.0, 1001.0, 1002.0], [0.0, 800.0, -5.0]])
    labels = np.array([0, 0])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        probs = np.apply_along_axis(my_softmax, 1, logits)
        naive = -np.log(probs[np.arange(2), labels])
    keras_way = sparse_categorical_crossentropy(labels, ll.softmax(logits), reduction="none")
    preferred = sparse_categorical_crossentropy(labels, logits, from_logits=True, reduction="none")
    table = Table(title="cross-entropy of the true class 0")
    table.add_column("logits")
    table.add_column("obvious: -log(my_softmax)")
    table.add_column("softmax, clip to 1e-7, log")
    table.add_column("preferred: from_logits=True")
    for row, a, b, c in zip(logits, naive, keras_way, preferred):
        table.add_row(escape(str(row)), f"{a:.6g}", f"{b:.6g}", f"{c:.6g}")
    console.print(table)


CENTERS = [[-5, 2], [-2, -2], [1, 2], [5, -2]]
FIGURES = ("decision_regions.png", "loss_curves.png", "reliability.png")


def _train_both(console, X, y):
    from logitlab import Sequential
    from logitlab.layers import Dense
    from logitlab.losses import SparseCategoricalCrossentropy
    from logitlab.optimizers import Adam

    models = {}
    for name, last, from_logits in (("obvious", "softmax", False), ("preferred", "linear", True)):
        console.rule(f"[bold]{name} model[/]: Dense(25, relu) -> Dense(15, relu) -> "
                     f"Dense(4, {last}); SparseCategoricalCrossentropy(from_logits={from_logits})")
        model = Sequential([Dense(25, activation="relu"), Dense(15, activation="relu"),
                            Dense(4, activation=last)], seed=1234)
        model.compile(loss=SparseCategoricalCrossentropy(from_logits=from_logits),
                      optimizer=Adam(0.001))
        model.fit(X, y, epochs=10, verbose=1)
        models[name] = model
    return models


def _show_outputs(console, models, X):
    p_obvious = models["obvious"].predict(X)
    console.print("\n[bold]obvious model[/]: the output is a vector of probabilities")
    console.print(escape(f"two example output vectors:\n {p_obvious[:2]}"))
    console.print(f"largest value {np.max(p_obvious):.8g} smallest value {np.min(p_obvious):.8g}")

    p_preferred = models["preferred"].predict(X)
    console.print("\n[bold]preferred model[/]: the outputs are logits, not probabilities")
    console.print(escape(f"two example output vectors:\n {p_preferred[:2]}"))
    console.print(f"largest value {np.max(p_preferred):.8g} smallest value {np.min(p_preferred):.8g}")

    sm = ll.softmax(p_preferred)
    console.print("\nsoftmax(logits) turns them into probabilities:")
    console.print(escape(f"two example output vectors:\n {sm[:2]}"))
    console.print(f"largest value {np.max(sm):.8g} smallest value {np.min(sm):.8g}")

    console.print("\nargmax picks the category; no softmax needed:")
    for i in range(5):
        console.print(escape(f"{p_preferred[i]}, category: {np.argmax(p_preferred[i])}"))


def show_calibration(console, model, X_cal, y_cal, X_test, y_test):
    """Temperature scaling of the lab model on fresh blobs: T, and NLL, ECE and Brier on
    a second fresh sample, before and after. Returns the two probability sets."""
    from logitlab.metrics import brier_score, expected_calibration_error, log_loss_from_logits

    console.rule("[bold]calibration[/]: are the preferred model's probabilities right?")
    logits = model.predict(X_test).astype(np.float64)
    before = ll.softmax(logits, axis=1)
    model.calibrate(X_cal, y_cal)  # a temperature fitted on held-out blobs, kept in the model
    t = model.calibration.temperature_
    after = model.predict_proba(X_test)
    table = Table(title=f"{len(X_test)} new blobs; temperature T = {t:.4g} fitted on "
                        f"{len(X_cal)} others")
    for col in ("probabilities", "log loss", "ECE (15 bins)", "Brier score"):
        table.add_column(col, justify="left" if col == "probabilities" else "right")
    for name, p, z in (("softmax(logits)", before, logits), ("softmax(logits / T)", after,
                                                              logits / t)):
        table.add_row(name, f"{log_loss_from_logits(y_test, z):.4f}",
                      f"{expected_calibration_error(y_test, p):.4f}",
                      f"{brier_score(y_test, p):.4f}")
    console.print(table)
    console.print("predict still returns the logits; predict_proba the calibrated "
                  "probabilities (T > 1: the model was over-confident, T < 1: under-confident)")
    return {"before: softmax(logits)": before, f"after: softmax(logits / {t:.3g})": after}


def _save_png(fig, path):
    import io

    from logitlab._io import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def _figures(models, X, y, output, calibration=None, y_test=None):
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(output, exist_ok=True)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    cmap = matplotlib.colors.ListedColormap(colors)

    fig, ax = plt.subplots(figsize=(7, 5))
    pad = 1.0
    xx, yy = np.meshgrid(np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, 300),
                         np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, 300))
    logits = models["preferred"].predict(np.c_[xx.ravel(), yy.ravel()])  # by batches of 32
    region = np.argmax(logits, axis=1).reshape(xx.shape)
    # softmax in pieces under the kernels' LOAD_SIZE: the demo never waits for Numba to compile
    # a kernel (4.4 s from an empty cache for the grid's 360,000 logits at once); `make demo`
    # fills the kernels' cache after it
    rows = _jit.LOAD_SIZE // logits.shape[1] - 1
    confidence = np.concatenate([ll.softmax(logits[i:i + rows]).max(axis=1)
                                 for i in range(0, len(logits), rows)]).reshape(xx.shape)
    ax.contourf(xx, yy, region, levels=np.arange(-0.5, 4.5), cmap=cmap, alpha=0.18)
    ax.contour(xx, yy, confidence, levels=[0.5, 0.9], colors="k", linewidths=0.6,
               linestyles=["--", ":"])
    for k in range(4):
        pts = X[y == k]
        ax.scatter(pts[:, 0], pts[:, 1], s=9, color=colors[k], label=f"class {k}",
                   edgecolors="none", alpha=0.8)
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    ax.set_title("Four blobs and the preferred model's decision regions\n"
                 "(dashed: max probability 0.5, dotted: 0.9)")
    ax.legend(loc="upper right", fontsize=8, title="category")
    regions_path = os.path.join(output, FIGURES[0])
    _save_png(fig, regions_path)
    plt.close(fig)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, style, alpha in (("obvious", "o-", 1.0), ("preferred", "s--", 0.8)):
        losses = models[name].history.history["loss"]
        ax.plot(range(1, len(losses) + 1), losses, style, label=f"{name} model", alpha=alpha)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (sparse categorical cross-entropy)")
    ax.set_yscale("log")
    ax.set_title("Loss per epoch, same initial weights:\nthe two organisations train alike here")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()

    margin = np.linspace(0.0, 60.0, 241)
    logits = np.column_stack([np.zeros_like(margin), margin])  # true class 0 loses by `margin`
    preferred = sparse_categorical_crossentropy(np.zeros(len(margin), int), logits,
                                                from_logits=True, reduction="none")
    obvious = sparse_categorical_crossentropy(np.zeros(len(margin), int), ll.softmax(logits),
                                              reduction="none")
    ax2.plot(margin, preferred, label="preferred: from_logits=True (exact)")
    ax2.plot(margin, obvious, "--", label="obvious: softmax, clip to 1e-7, log")
    ax2.set_xlabel("how far the wrong class's logit is ahead, $z_1 - z_0$")
    ax2.set_ylabel("loss of the true class 0")
    ax2.set_title("Where they differ: a confidently wrong prediction\n"
                  "(the clipped loss saturates at 16.1 and its gradient vanishes)")
    ax2.grid(True, alpha=0.3)
    ax2.legend()
    curves_path = os.path.join(output, FIGURES[1])
    _save_png(fig, curves_path)
    plt.close(fig)
    paths = [regions_path, curves_path]
    if calibration is not None:
        from logitlab.metrics import plot_reliability_diagram

        fig = plot_reliability_diagram(y_test, calibration)
        fig.suptitle("The preferred model's reliability on new blobs, before and after "
                     "temperature scaling", y=1.03)
        paths.append(os.path.join(output, FIGURES[2]))
        _save_png(fig, paths[-1])
        plt.close(fig)
    return paths


def run_demo(output: str):
    from sklearn.datasets import make_blobs

    console = Console(highlight=False)
    console.rule("[bold]logitlab demo: the softmax lab, done right")
    show_overflow(console)
    show_losses(console)
    X, y = make_blobs(n_samples=2000, centers=CENTERS, cluster_std=1.0, random_state=30)
    models = _train_both(console, X, y)
    _show_outputs(console, models, X)
    # fresh blobs from the same centres: half to fit a temperature, half to judge it
    X_new, y_new = make_blobs(n_samples=2000, centers=CENTERS, cluster_std=1.0, random_state=31)
    calibration = show_calibration(console, models["preferred"], X_new[:1000], y_new[:1000],
                                   X_new[1000:], y_new[1000:])
    paths = _figures(models, X, y, output, calibration, y_new[1000:])
    console.rule("[bold]figures")
    for p in paths:
        console.print(f"wrote {escape(p)}", soft_wrap=True)
