"""Command definitions. Heavy imports happen inside the commands that need them."""

from __future__ import annotations

import sys

import click

from .._version import __version__


class UsageFailure(click.ClickException):
    """A user error: one line on stderr, exit status 2, no traceback."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logitlab")
def cli():
    """Multiclass and multilabel classification on softmax and cross-entropy.

    \b
    Example:
      logitlab demo                 # the softmax lab, in the terminal and in pictures
    """


@cli.command()
@click.option("--output", "-o", default="logitlab-demo", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the figures.")
def demo(output):
    """Run the seeds' softmax lab: overflow, the preferred loss, two trained models.

    \b
    Example:
      logitlab demo --output figs
    """
    from ._demo import run_demo

    run_demo(output)


def main(argv=None):
    """Entry point of the ``logitlab`` console script."""
    try:
        cli.main(args=argv, prog_name="logitlab", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
