"""Command definitions. Heavy imports happen inside the commands that need them."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from .._version import __version__


class UsageFailure(click.ClickException):
    """A user error: one line on stderr, exit status 2, no traceback."""

    exit_code = 2


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning during a command as one line, ``warning: Category: message``: the file and
    line Python would print are inside logitlab or click, of no use to the command's user."""
    text = " ".join(str(message).split())
    click.echo(f"warning: {category.__name__}: {text}", err=True)


def _user_errors(fn):
    """Turn the user's data and model-file errors into one line and exit status 2, and
    warnings into one line each."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import warnings

        from .._io import WriteError
        from .._validation import LogitlabError
        from ._data import DataError

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except (DataError, LogitlabError) as exc:
            raise UsageFailure(str(exc)) from None
        except BrokenPipeError:
            raise  # not the user's data: the reader of our output went away
        except WriteError as exc:
            raise UsageFailure(f"cannot write {exc.filename}: {exc.strerror}") from None
        except OSError as exc:  # the machine's answer about a file: unreadable, a folder...
            where = f"{exc.filename}: " if exc.filename else ""
            raise UsageFailure(f"{where}{exc.strerror or exc}") from None
        except MemoryError as exc:  # NumPy's names the allocation
            raise UsageFailure(f"out of memory: {exc or 'an allocation failed'} (the data, the "
                               "number of features and classes, or --hidden ask for more than "
                               "this machine has)") from None
    return wrapper


def _refuse_same_file(output, inputs, option="--output"):
    """Refuse an output that is one of the inputs (same path, a link to it, a hard link).

    Compares the resolved paths, and the (device, inode) pair where both exist.
    """
    for what, path in inputs:
        if path is None:
            continue
        same = os.path.realpath(path) == os.path.realpath(output)
        if not same:
            try:
                same = os.path.samefile(path, output)
            except OSError:  # one of them does not exist (yet)
                same = False
        if same:
            raise UsageFailure(f"{option} {output} is the {what} {path}: writing it would destroy "
                               "the input; choose another output path")


def _check_output(output, inputs=(), option="--output"):
    """Before any work: the output is not an input, and its folder takes a new file."""
    from .._io import WriteError, check_writable

    _refuse_same_file(output, inputs, option)
    try:
        check_writable(output)
    except WriteError as exc:
        raise UsageFailure(f"cannot write {exc.filename}: {exc.strerror}") from None


def _check_output_folder(folder, first_file):
    """Like :func:`_check_output` for a folder of figures that may not exist yet."""
    from .._io import WriteError, check_writable

    probe = os.path.abspath(folder)
    while not os.path.exists(probe):  # the nearest folder that exists: it must take the new one
        probe = os.path.dirname(probe)
    try:
        if probe != os.path.abspath(folder) and not os.path.isdir(probe):
            raise WriteError(20, f"{probe} is not a folder", folder)
        check_writable(os.path.join(probe, first_file))
    except WriteError as exc:
        raise UsageFailure(f"cannot write into {folder}: {exc.strerror}") from None


class _Number(click.FloatRange):
    """A float in a range, never NaN (every comparison with it is false, so FloatRange takes
    it), and infinite only where ``infinite`` allows it (``--C inf``: no penalty)."""

    def __init__(self, *args, infinite=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.infinite = infinite

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if math.isnan(number) or (math.isinf(number) and not self.infinite):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _split_list(ctx, param, value):
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter("expected a comma-separated list")
    return items


def _hidden(ctx, param, value):
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected sizes like 25,15; got {value!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"expected positive sizes like 25,15; got {value!r}")
    return sizes


def _one_label_source(target, labels):
    """--target names the labels inside DATA, --labels gives them in a file: not both (the
    one not used would be read as a feature, or ignored)."""
    if target and labels:
        raise UsageFailure(f"give the labels either with --target {target} (a column or array "
                           f"of DATA) or with --labels {labels}, not both")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logitlab")
def cli():
    """Multiclass and multilabel classification on softmax and cross-entropy.

    \b
    Examples:
      logitlab demo                                   # the softmax lab, terminal and pictures
      logitlab train data.csv --target species --output model.logitlab
      logitlab predict model.logitlab new.csv --proba --output predictions.csv
      logitlab evaluate model.logitlab test.csv --target species
      logitlab explore                                # an interactive softmax page
    """


@cli.command()
@click.option("--output", "-o", default="logitlab-demo", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the figures.")
@_user_errors
def demo(output):
    """Run the seeds' softmax lab: overflow, the preferred loss, two trained models.

    \b
    Example:
      logitlab demo --output figs
    """
    from ._demo import FIGURES, run_demo

    _check_output_folder(output, FIGURES[0])
    run_demo(output)


_MLP_ONLY = {"hidden": "--hidden", "epochs": "--epochs", "batch_size": "--batch-size",
             "learning_rate": "--learning-rate"}
_SOFTMAX_ONLY = {"C": "--C", "max_iter": "--max-iter"}


#: What a model file fixes for --resume: typed too, these would be ignored
_FIXED_BY_RESUME = {"model": "--model", "hidden": "--hidden", "batch_size": "--batch-size",
                    "learning_rate": "--learning-rate", "C": "--C",
                    "validation_split": "--validation-split", "seed": "--seed"}


def _typed(*names):
    """The options among ``names`` that the command line set (not their defaults)."""
    ctx = click.get_current_context()
    return {name for name in names
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}


def _model_options_match(model, resume):
    """Refuse options typed for the other model (they would be ignored): the mlp's with
    --model softmax, --C with --model mlp. With --resume the model file says which, and
    what it fixes (the model, its sizes, the split) may not be typed."""
    if resume:
        fixed = sorted(_FIXED_BY_RESUME[n] for n in _typed(*_FIXED_BY_RESUME))
        if fixed:
            raise UsageFailure(f"{', '.join(fixed)}: --resume {resume} continues the model as "
                               "it was saved, which would ignore "
                               f"{'it' if len(fixed) == 1 else 'them'}; drop "
                               f"{'it' if len(fixed) == 1 else 'them'}, or train a new model")
        return
    others = _MLP_ONLY if model == "softmax" else _SOFTMAX_ONLY  # the other model's options
    wrong = sorted(others[n] for n in _typed(*others))
    if wrong:
        other = "mlp" if model == "softmax" else "softmax"
        raise UsageFailure(f"{', '.join(wrong)} {'applies' if len(wrong) == 1 else 'apply'} to "
                           f"--model {other}; got --model {model}, which would ignore "
                           f"{'it' if len(wrong) == 1 else 'them'}")


@cli.command()
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--target", help="The label column (text labels are fine).")
@click.option("--labels", type=click.Path(dir_okay=False),
              help="A .npy file of labels, one per row, for DATA that holds none (a sparse "
                   "matrix written by scipy.sparse.save_npz).")
@click.option("--model", type=click.Choice(["softmax", "mlp"]), default="softmax", show_default=True,
              help="Softmax regression (L-BFGS; Newton-CG on sparse DATA) or a neural "
                   "network.")
@click.option("--hidden", default="25,15", show_default=True, callback=_hidden,
              help="Hidden layer sizes of the mlp.")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--learning-rate", type=_Number(min=0, min_open=True), default=0.001,
              show_default=True)
@click.option("--C", "C", type=_Number(min=0, min_open=True, infinite=True), default=1.0,
              show_default=True, help="Inverse L2 strength of softmax regression (inf: none).")
@click.option("--max-iter", "max_iter", type=click.IntRange(min=1), default=1000,
              show_default=True,
              help="Iterations of softmax regression's solver at most (L-BFGS; Newton-CG on "
                   "sparse DATA).")
@click.option("--validation-split", type=_Number(0, 1, max_open=True), default=0.2,
              show_default=True, help="Fraction held out for the metrics.")
@click.option("--multilabel", callback=_split_list,
              help="Several 0/1 label columns, e.g. car,bus,pedestrian (needs --model mlp).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="dask: read the CSV in chunks and fit softmax regression on a Dask cluster.")
@click.option("--scheduler", help="Address of an existing Dask scheduler (default: a local cluster).")
@click.option("--blocksize", default="64MB", show_default=True, help="Dask chunk size of the CSV.")
@click.option("--resume", type=click.Path(dir_okay=False),
              help="Continue training a model file saved by an earlier (interrupted) train.")
@click.option("--calibrate", is_flag=True,
              help="Hold out 20% of the training rows, fit a temperature on them and store it "
                   "in the model (its probabilities are then calibrated).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to save the model file.")
@_user_errors
def train(data, target, labels, model, hidden, epochs, batch_size, learning_rate, C, max_iter,
          validation_split, multilabel, seed, engine, scheduler, blocksize, resume, calibrate,
          output):
    """Train a classifier on a CSV (header row) or .npz file and save it.

    An .npz holds an array X (and its labels, named by --target), or a CSR/CSC
    matrix as scipy.sparse.save_npz writes it, kept sparse (--model softmax);
    its labels come from the same file or from --labels.

    The features are standardised on the training rows before the fit (each
    column less its mean, over its standard deviation; sparse columns only
    divided, to stay sparse), and the model file keeps that scaling for
    evaluate and predict: --C penalises the standardised coefficients.

    \b
    Example:
      logitlab train iris.csv --target species --model mlp --epochs 100 -o iris.logitlab
      logitlab train tfidf.npz --labels topics.npy -o topics.logitlab
      logitlab train iris.csv --resume iris.logitlab --epochs 200 -o iris.logitlab
      logitlab train big.csv --target label --engine dask -o big.logitlab
    """
    _check_output(output, [("data file", data), ("labels file", labels)])
    _one_label_source(target, labels)
    if engine != "dask" and _typed("blocksize"):
        raise UsageFailure(f"--blocksize sizes the chunks of --engine dask; got --engine "
                           f"{engine}, which would ignore it")
    if scheduler is not None and (engine != "dask" or not scheduler.strip()):
        # neither a run on this machine nor an empty address ("$UNSET") falls back silently
        raise UsageFailure(f"--scheduler takes the address of a Dask scheduler (such as "
                           f"tcp://HOST:8786) for --engine dask; got {scheduler!r} with "
                           f"--engine {engine}")
    _model_options_match(model, resume)
    if engine == "dask":
        from ._train import run_train_dask

        if str(data).endswith(".npz") or labels:
            raise UsageFailure(f"--engine dask reads a CSV in chunks; for {data} (an .npz, or "
                               "--labels) use --engine local")
        if model != "softmax" or multilabel or resume or calibrate:
            raise UsageFailure("--engine dask trains --model softmax on a single --target "
                               "(without --resume or --calibrate)")
        return run_train_dask(data, target, validation_split or 0.2, seed, output, C, scheduler,
                              blocksize, max_iter=max_iter)
    from ._train import run_train

    run_train(data, target, model, hidden, epochs, batch_size, learning_rate, validation_split,
              multilabel, seed, output, C, resume, calibrate, labels,
              epochs_typed=bool(_typed("epochs")), max_iter=max_iter,
              max_iter_typed=bool(_typed("max_iter")))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--proba", is_flag=True, help="Add one probability column per class.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="CSV file to write (default: standard output).")
@_user_errors
def predict(model, data, proba, output):
    """Predict labels (in the original label names) for the rows of DATA.

    Labels that a spreadsheet would run as a formula (starting with = + - @,
    tab or carriage return; plain numbers such as -1 excepted) are written with
    a leading single quote, as OWASP advises against CSV injection.

    \b
    Example:
      logitlab predict iris.logitlab new.csv --proba -o predictions.csv
    """
    if output is not None:
        _check_output(output, [("model file", model), ("data file", data)])
        if str(output).lower().endswith((".npz", ".npy")):  # a NumPy reader would choke
            raise UsageFailure(f"--output {output}: predict writes a CSV; give a .csv name")
    from ._train import run_predict

    run_predict(model, data, proba, output)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--target", help="The label column (default: the one used in training).")
@click.option("--labels", type=click.Path(dir_okay=False),
              help="A .npy file of labels, one per row of DATA (instead of --target).")
@click.option("--plot", type=click.Path(dir_okay=False),
              help="Write the reliability diagram to this PNG file.")
@_user_errors
def evaluate(model, data, target, labels, plot):
    """Accuracy, log loss, ECE, Brier score, top-k accuracy, per-class precision/recall
    and confusion matrix on DATA.

    \b
    Example:
      logitlab evaluate iris.logitlab test.csv --target species --plot reliability.png
    """
    _one_label_source(target, labels)
    if plot is not None:
        _check_output(plot, [("model file", model), ("data file", data), ("labels file", labels)],
                      "--plot")
    from ._train import run_evaluate

    run_evaluate(model, data, target, plot, labels)


@cli.command()
@click.option("--output", "-o", default="logitlab-explore.html", show_default=True,
              type=click.Path(dir_okay=False), help="The HTML file to write.")
@_user_errors
def explore(output):
    """Write an interactive softmax / sparsemax page (one self-contained HTML file).

    \b
    Example:
      logitlab explore -o softmax.html && xdg-open softmax.html
    """
    _check_output(output)
    from ._explore import write_explorer

    path = write_explorer(output)
    click.echo(f"wrote {path}: open it in a browser (it needs no network)")


class _UntilThePipeCloses:
    """Standard output that, once its reader has gone, sends the rest to ``os.devnull``.

    So ``logitlab train ... | head -2`` still trains and saves its model, and
    every command ends with status 0 rather than dying in the middle of a
    write. Everything but ``write``/``writelines``/``flush`` is the stream's own.
    """

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def _closed_pipe(self):
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._closed_pipe()
            return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._closed_pipe()
            # what the stream still holds goes to os.devnull now
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()


def main(argv=None):
    """Entry point of the ``logitlab`` console script."""
    stdout = sys.stdout
    if stdout is not None:
        sys.stdout = _UntilThePipeCloses(stdout)
    try:
        cli.main(args=argv, prog_name="logitlab", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
    finally:
        sys.stdout = stdout
