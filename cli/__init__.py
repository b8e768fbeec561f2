"""The ``neuralfit`` command line (installed as ``neuralfit.cli``)."""
