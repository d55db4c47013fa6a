"""How long `logitlab predict` and `evaluate` take on iris (150 rows), as a user runs them.

    python benchmarks/bench_cli_startup.py [--runs 10]

Each command runs ``--runs`` times as a fresh process (hyperfine-style; the
first run is a warm-up and not counted); the table gives the median and the
range. Beside them: ``python -c 'import logitlab'`` and ``import sklearn``
for scale, and the ten slowest imports of one predict (``python -X importtime``).
"""

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.datasets import load_iris

from _common import machine, table


def timed(cmd, runs, cwd):
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        if i:  # the first run warms the OS's file cache
            times.append(time.perf_counter() - t)
    return np.median(times), min(times), max(times)


def slowest_imports(cmd, cwd, n=10):
    res = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], cwd=cwd,
                         capture_output=True, text=True, check=True)
    rows = []
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and len(m.group(3)) <= 3:  # top-level imports (and their children's totals)
            rows.append((int(m.group(2)) / 1e6, m.group(4)))
    return sorted(rows, reverse=True)[:n]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        iris = load_iris()
        with open(os.path.join(tmp, "iris.csv"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
            w.writerows(list(x) + [iris.target_names[t]] for x, t in zip(iris.data, iris.target))
        cli = [sys.executable, "-m", "logitlab"]
        for model in ("softmax", "mlp"):
            subprocess.run([*cli, "train", "iris.csv", "--target", "species", "--model", model,
                            "--epochs", "20", "-o", f"{model}.logitlab"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
        commands = {
            "python -c 'import logitlab'": [sys.executable, "-c", "import logitlab"],
            "python -c 'import sklearn' (for scale)": [sys.executable, "-c", "import sklearn"],
        }
        for model in ("softmax", "mlp"):
            commands[f"logitlab predict {model}.logitlab iris.csv --proba"] = \
                [*cli, "predict", f"{model}.logitlab", "iris.csv", "--proba"]
            commands[f"logitlab evaluate {model}.logitlab iris.csv"] = \
                [*cli, "evaluate", f"{model}.logitlab", "iris.csv"]
        rows = []
        for name, cmd in commands.items():
            med, lo, hi = timed(cmd, args.runs, tmp)
            rows.append([name, f"{med:.3f}", f"{lo:.3f}-{hi:.3f}"])
        print(f"\nwall time of a fresh process, {args.runs} runs (s)")
        table(["command", "median", "range"], rows)
        print("\nslowest imports of `logitlab predict softmax.logitlab iris.csv` (-X importtime)")
        table(["module", "cumulative (s)"],
              [[name, f"{sec:.3f}"] for sec, name in
               slowest_imports(commands["logitlab predict softmax.logitlab iris.csv --proba"], tmp)])


if __name__ == "__main__":
    main()
