"""Network checkpoint files: weights plus what is needed to use them safely.

A checkpoint is a ``torch.save`` dict of plain types (loadable with ``weights_only=True``)::

    format        "neuralfit-network", version 1
    config        NetConfig.to_dict()
    body          {"name", "spec", "num_vertices", "num_lowres"}: the body whose parts/keypoints it learnt
    joint_set     {"name", "names"}: the heatmap head's keypoints, in order
    state_dict    MultiTaskNet weights (including the regressor's mean-pose buffers)
    feature_bank  optional (V_low, K, D) contrastive bank the features were trained against
    provenance    free-form dict: datasets, epochs, losses, command line, neuralfit version, date

A network's part classes and keypoints are defined by its body, so :func:`load_network` refuses a
checkpoint made for another body (name or vertex counts differ) or another joint set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from neuralfit.errors import NeuralfitError
from neuralfit.io.atomic import atomic_path
from neuralfit.nets.model import MultiTaskNet, NetConfig

FORMAT = "neuralfit-network"
VERSION = 1


def body_signature(body: Any) -> dict[str, Any]:
    """Identity of a body model as stored in checkpoints: name, spec and vertex counts."""
    return {
        "name": str(body.name),
        "spec": str(body.spec),
        "num_vertices": int(body.part_labels.shape[0]),
        "num_lowres": int(body.lowres.part_labels.shape[0]),
    }


def save_network(path: str | os.PathLike, net: MultiTaskNet, body: Any, provenance: dict[str, Any] | None = None,
                 feature_bank: torch.Tensor | None = None, half: bool = False) -> None:
    """Write ``net`` to ``path`` atomically, with its config, body identity, joint set and provenance.

    ``half`` stores floating-point weights as float16 (half the size, for the shipped default; the
    weights are cast back to float32 on load, a relative change of at most 2^-11 per weight).
    """
    cfg = net.config
    kset = body.keypoint_sets.get(cfg.joint_set) if hasattr(body.keypoint_sets, "get") else None
    if kset is None:
        raise NeuralfitError(f"body {body.name!r} has no keypoint set {cfg.joint_set!r} (the network's joint_set)")
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "body": body_signature(body),
        "joint_set": {"name": cfg.joint_set, "names": list(kset.names)},
        "state_dict": {k: _store(v, half) for k, v in net.state_dict().items()},
        "feature_bank": None if feature_bank is None else _store(feature_bank, half),
        "provenance": dict(provenance or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def _store(t: torch.Tensor, half: bool) -> torch.Tensor:
    t = t.detach().cpu()
    return t.half() if half and t.is_floating_point() else t


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate the checkpoint dict (no network is built)."""
    p = Path(path)
    if not p.is_file():
        raise NeuralfitError(f"network checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's own message spans many lines (weights_only advice); the type is enough for one line.
        raise NeuralfitError(f"cannot read network checkpoint {p}: expected a neuralfit network file "
                             f"({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise NeuralfitError(f"{p} is not a neuralfit network checkpoint (format {FORMAT!r} expected)")
    if int(ckpt.get("version", 0)) > VERSION:
        raise NeuralfitError(f"network checkpoint {p} has version {ckpt['version']}; this neuralfit reads <= {VERSION}")
    return ckpt


def check_compatible(ckpt: dict[str, Any], body: Any, path: str | os.PathLike = "checkpoint") -> None:
    """Raise :class:`NeuralfitError` unless ``ckpt`` was made for ``body`` and a joint set it defines."""
    want = ckpt["body"]
    have = body_signature(body)
    for key in ("name", "num_vertices", "num_lowres"):
        if want[key] != have[key]:
            raise NeuralfitError(
                f"network checkpoint {path} was made for body {want['name']!r} ({want['num_vertices']} vertices, "
                f"{want['num_lowres']} low-res), not for the loaded body {have['name']!r} ({have['num_vertices']} "
                f"vertices, {have['num_lowres']} low-res); load the matching body or retrain the network")
    js = ckpt["joint_set"]
    kset = body.keypoint_sets.get(js["name"]) if hasattr(body.keypoint_sets, "get") else None
    if kset is None or list(kset.names) != list(js["names"]):
        raise NeuralfitError(
            f"network checkpoint {path} predicts joint set {js['name']!r} ({len(js['names'])} keypoints), "
            f"which body {have['name']!r} does not define in the same order")


def load_network(path: str | os.PathLike, body: Any, device: str | torch.device = "cpu") -> MultiTaskNet:
    """Build the network stored at ``path`` for ``body``, in eval mode on ``device``.

    Raises :class:`NeuralfitError` if the file is not a network checkpoint, or was made for another
    body or joint set.
    """
    ckpt = read_checkpoint(path)
    check_compatible(ckpt, body, path)
    cfg = NetConfig.from_dict(ckpt["config"])
    # The stored weights replace the bundled ImageNet ones: do not read those at all.
    cfg.pretrained = False
    cfg.backbone_weights = None
    net = MultiTaskNet(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise NeuralfitError(f"network checkpoint {path} does not match its own config: {str(exc)[:200]}") from exc
    net.checkpoint_info = {"provenance": ckpt.get("provenance", {}), "body": ckpt["body"],
                           "joint_set": ckpt["joint_set"]["name"],
                           "feature_bank": None if ckpt.get("feature_bank") is None else ckpt["feature_bank"].float()}
    return net.to(device).eval()
