"""``logitlab demo``: the seeds' lab, told in the terminal and in pictures."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import logitlab as ll
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


def run_demo(output: str):
    console = Console()
    console.rule("[bold]logitlab demo: softmax done right")
    show_overflow(console)
    show_losses(console)
