"""Entry point of the ``neuralfit`` console script.

Each sub-command lives in its own module and imports torch and friends inside the command
function, so that ``neuralfit --help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from neuralfit import __version__
from neuralfit.errors import NeuralfitError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neuralfit")
def cli() -> None:
    """Occlusion-robust 3D human pose and shape fitting (NeuralSMPL style)."""


def _register() -> None:
    from neuralfit.cli import body, eval, fit, refine, sweep, synth, train

    for command in (fit.fit, refine.refine, eval.eval, sweep.sweep, synth.synth, train.train, body.body):
        cli.add_command(command)


_register()


def main() -> None:
    """Run the CLI; a :class:`NeuralfitError` becomes one ``error:`` line and its exit code."""
    try:
        cli.main(standalone_mode=False)
    except NeuralfitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
