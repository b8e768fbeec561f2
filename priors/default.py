"""Loading pose priors: the embedded default, official VPoser v2 checkpoints, VPoser v1 snapshots.

``load_pose_prior(spec)`` accepts

* ``"default"``: the prior trained by ``neuralfit train prior`` and shipped in ``priors/assets``;
* a VPoser v2 experiment folder (``V02_05/`` with ``snapshots/*.ckpt`` and a ``*.yaml``);
* a ``.ckpt`` (PyTorch-Lightning, keys ``vp_model.*``), a ``.pt``/``.pth`` state dict, or a ``.npz``
  written by :func:`save_vposer_npz`;
* a VPoser v1 experiment folder or snapshot (``human_body_prior`` 0.8.5 format), loaded through that
  package when it is installed.

All return a :class:`~neuralfit.priors.pose_prior.PosePrior`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuralfit.errors import NeuralfitError

from .joint_limits import JointLimitPrior
from .pose_prior import PosePrior, PosePriorConfig
from .vposer import NUM_BODY_JOINTS, VPoser, VPoserConfig

DEFAULT_ASSET = "default_prior.npz"
LIGHTNING_PREFIX = "vp_model."
_V1_KEY_PREFIX = "bodyprior_"  # v1 (human_body_prior 0.8.5) parameter names start with this


def default_prior_path() -> Path:
    """Path of the shipped default prior weights inside the installed package."""
    return Path(str(resources.files("neuralfit.priors") / "assets" / DEFAULT_ASSET))


# ---------------------------------------------------------------------------------------------
# Reading checkpoints
# ---------------------------------------------------------------------------------------------

class _Opaque:
    """Stand-in for any non-tensor object in a checkpoint (optimizer configs, omegaconf hparams)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _TensorsOnlyUnpickler(pickle.Unpickler):
    """Unpickles torch tensors and plain containers; every other class becomes :class:`_Opaque`.

    Lightning checkpoints carry hyper-parameters as omegaconf objects, which torch's ``weights_only``
    loader refuses; this reads such files without importing or running their classes.
    """

    _SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bytes", "bool",
                      "complex", "slice"}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" or module.startswith("torch."):
            return super().find_class(module, name)
        if module == "collections" and name == "OrderedDict":
            return super().find_class(module, name)
        if module == "builtins" and name in self._SAFE_BUILTINS:
            return super().find_class(module, name)
        return _Opaque


class _TensorsOnlyPickle:
    """A ``pickle_module`` for ``torch.load`` that uses :class:`_TensorsOnlyUnpickler`."""

    Unpickler = _TensorsOnlyUnpickler
    load = staticmethod(lambda f, **kw: _TensorsOnlyUnpickler(f, **kw).load())
    loads = staticmethod(lambda b, **kw: _TensorsOnlyUnpickler(io.BytesIO(b), **kw).load())


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a ``.ckpt``/``.pt``/``.pth`` file: its ``state_dict`` entry or the file itself."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TensorsOnlyPickle)
        except Exception as exc:  # noqa: BLE001 - any failure here means an unreadable file
            raise NeuralfitError(f"checkpoint {path}: cannot read ({exc}); expected a torch .ckpt/.pt file") from exc
    except Exception as exc:  # noqa: BLE001
        raise NeuralfitError(f"checkpoint {path}: cannot read ({exc}); expected a torch .ckpt/.pt file") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise NeuralfitError(f"checkpoint {path}: no state dict inside; expected a VPoser checkpoint")
    return {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}


def vposer_from_state_dict(state: dict[str, torch.Tensor], source: str = "state dict") -> VPoser:
    """Build a :class:`VPoser` whose sizes match ``state`` and load it strictly.

    Keys may carry Lightning's ``vp_model.`` prefix; other entries of a Lightning module (e.g. a body
    model's buffers) are ignored when prefixed keys are present.
    """
    if any(k.startswith(LIGHTNING_PREFIX) for k in state):
        state = {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items() if k.startswith(LIGHTNING_PREFIX)}
    try:
        h, n_in = state["encoder_net.2.weight"].shape
        d = state["encoder_net.8.mu.weight"].shape[0]
    except KeyError as exc:
        raise NeuralfitError(f"{source}: no VPoser v2 weights (missing {exc.args[0]}); "
                             "expected keys like vp_model.encoder_net.2.weight") from exc
    if n_in != NUM_BODY_JOINTS * 3:
        raise NeuralfitError(f"{source}: encoder input size {n_in}; expected {NUM_BODY_JOINTS * 3} (21 joints)")
    model = VPoser(VPoserConfig(num_neurons=int(h), latent_dim=int(d)))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise NeuralfitError(f"{source}: not the VPoser v2 layout (missing {missing[:3]}, unexpected {unexpected[:3]})")
    bad = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        raise NeuralfitError(f"{source}: wrong shapes for {bad[:3]}; expected the VPoser v2 layout")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model.eval()


def _yaml_model_params(yaml_path: Path) -> dict[str, int]:
    """``num_neurons`` and ``latentD`` from an experiment yaml (plain regex: no yaml dependency)."""
    text = yaml_path.read_text(errors="replace")
    out = {}
    for key in ("num_neurons", "latentD"):
        m = re.search(rf"^\s*{key}\s*:\s*(\d+)", text, flags=re.MULTILINE)
        if m:
            out[key] = int(m.group(1))
    return out


# ---------------------------------------------------------------------------------------------
# Our own compact format (the shipped default)
# ---------------------------------------------------------------------------------------------

def save_vposer_npz(path: str | os.PathLike, model: VPoser, meta: dict[str, Any] | None = None,
                    dtype: np.dtype = np.float16) -> None:
    """Write weights (official key names, ``dtype``, compressed) plus JSON ``meta``, atomically."""
    from neuralfit.io.atomic import atomic_path

    arrays = {}
    for k, v in model.state_dict().items():
        a = v.detach().cpu().numpy()
        arrays[k] = a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a
    arrays["__meta__"] = np.array(json.dumps(meta or {}))
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_vposer_npz(path: str | os.PathLike) -> tuple[VPoser, dict[str, Any]]:
    """Read a file written by :func:`save_vposer_npz`: ``(model, meta)``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
            state = {k: torch.from_numpy(z[k].copy()) for k in z.files if k != "__meta__"}
    except (OSError, ValueError, KeyError) as exc:
        raise NeuralfitError(f"pose prior {path}: cannot read ({exc}); expected a neuralfit prior .npz") from exc
    return vposer_from_state_dict(state, source=str(path)), meta


# ---------------------------------------------------------------------------------------------
# VPoser v1 through human_body_prior
# ---------------------------------------------------------------------------------------------

class _V1Backbone(torch.nn.Module):
    """Adapts a ``human_body_prior`` 0.8.5 VPoser (v1) to the backbone interface."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.latent_dim = int(getattr(model, "latentD", 32))

    def encode(self, pose_body: torch.Tensor) -> torch.distributions.Normal:
        return self.model.encode(pose_body.reshape(-1, 1, NUM_BODY_JOINTS, 3))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z, output_type="aa").reshape(z.shape[0], NUM_BODY_JOINTS * 3)


def _is_v1(path: Path) -> bool:
    if path.is_dir():
        return any(path.glob("snapshots/*.pt")) and not any(path.glob("snapshots/*.ckpt"))
    if path.suffix in (".pt", ".pth"):
        try:
            keys = read_state_dict(path).keys()
        except NeuralfitError:
            return False
        return any(k.startswith(_V1_KEY_PREFIX) for k in keys)
    return False


def _load_v1(path: Path) -> torch.nn.Module:
    try:
        from human_body_prior.tools.model_loader import load_vposer  # type: ignore[import-not-found]
    except ImportError as exc:
        raise NeuralfitError(
            f"{path} is a VPoser v1 snapshot; loading it needs `pip install human-body-prior==0.8.5` "
            "(or use a VPoser v2 checkpoint such as V02_05)") from exc
    expr_dir = path if path.is_dir() else path.parent.parent
    try:
        model, _ = load_vposer(str(expr_dir), vp_model="snapshot")
    except Exception as exc:  # noqa: BLE001 - the third-party loader raises many types
        raise NeuralfitError(f"VPoser v1 experiment {expr_dir}: human_body_prior failed to load it ({exc})") from exc
    return _V1Backbone(model.eval())


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------

def _find_v2_checkpoint(folder: Path) -> Path:
    ckpts = sorted(folder.glob("snapshots/*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
    if not ckpts:
        ckpts = sorted(folder.glob("*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name))
    if not ckpts:
        raise NeuralfitError(f"pose prior folder {folder}: no snapshots/*.ckpt; expected a VPoser v2 experiment "
                             "folder like V02_05")
    return ckpts[-1]  # the newest, as the official loader picks


def load_pose_prior(spec: str | os.PathLike = "default", device: str | torch.device = "cpu",
                    config: PosePriorConfig | None = None) -> PosePrior:
    """Load a pose prior: ``"default"``, a VPoser v2 folder/``.ckpt``/``.pt``/``.npz``, or a v1 snapshot.

    Returns a frozen :class:`PosePrior` on ``device`` with ``penalty``, ``encode``, ``decode``,
    ``sample`` and ``project``.
    """
    limits = JointLimitPrior()
    if str(spec) == "default":
        path = default_prior_path()
        if not path.is_file():
            raise NeuralfitError(f"default pose prior {path} is missing; train it with `neuralfit train prior`")
        model, _ = load_vposer_npz(path)
        return PosePrior(model, limits, config, name="neuralfit-default").to(device)

    path = Path(spec).expanduser()
    if not path.exists():
        raise NeuralfitError(f"pose prior {path} not found; expected 'default', a VPoser folder or a checkpoint file")
    if _is_v1(path):
        return PosePrior(_load_v1(path), limits, config, name="vposer-v1").to(device)
    if path.is_dir():
        ckpt = _find_v2_checkpoint(path)
        model = vposer_from_state_dict(read_state_dict(ckpt), source=str(ckpt))
        yamls = sorted(path.glob("*.yaml"))
        if yamls:
            params = _yaml_model_params(yamls[0])
            got = {"num_neurons": model.config.num_neurons, "latentD": model.config.latent_dim}
            clash = {k: (v, got[k]) for k, v in params.items() if got[k] != v}
            if clash:
                raise NeuralfitError(f"{yamls[0]} says {params} but {ckpt.name} has {got}; expected them to agree")
        return PosePrior(model, limits, config, name=f"vposer-v2:{path.name}").to(device)
    if path.suffix == ".npz":
        model, _ = load_vposer_npz(path)
    elif path.suffix in (".ckpt", ".pt", ".pth"):
        model = vposer_from_state_dict(read_state_dict(path), source=str(path))
    else:
        raise NeuralfitError(f"pose prior {path}: unknown file type; expected .ckpt, .pt, .pth or .npz")
    return PosePrior(model, limits, config, name=f"vposer-v2:{path.name}").to(device)
