"""The one exception type that user-facing code raises for bad input.

The CLI turns a :class:`NeuralfitError` into a single ``error: ...`` line and a non-zero exit
status, with no traceback. Anything else escaping is a bug in neuralfit.
"""


class NeuralfitError(Exception):
    """Bad input or an unusable asset: a wrong path, a corrupt file, mismatched shapes, NaNs.

    The message must be one line that names the offending thing and what was expected.
    """

    exit_code = 1


def run_script(main) -> None:
    """``sys.exit(main())`` for a benchmark script, a :class:`NeuralfitError` as one ``error:`` line and exit 1."""
    import sys

    try:
        sys.exit(main())
    except NeuralfitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
