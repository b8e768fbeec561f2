"""Evaluation under occlusion (docs/evaluation.md).

- :mod:`neuralfit.eval.metrics`: MPJPE, PA-MPJPE, PVE, PCKh with visible-joint variants (torch or numpy).
- :mod:`neuralfit.eval.protocols`: test samples, the method protocol, occluders (random, AdvOcc@S), the
  resumable evaluation loop, the oracle stand-in.
- :mod:`neuralfit.eval.methods`: regressor / keypoints-only fit / neural fit as methods.
- :mod:`neuralfit.eval.sensitivity`: PARE-style occlusion sensitivity maps and the sensitivity mesh.
- :mod:`neuralfit.eval.report`: summaries and tables.

Submodules are imported explicitly (nothing heavy is imported here).
"""
