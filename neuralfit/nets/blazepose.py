"""BlazePose GHUM's frozen trunk as a backbone: pose-aware multi-level features for a person crop.

The trunk is mediapipe's full pose landmark model (``pose_landmark_full.tflite``, Apache-2.0), read from
the installed mediapipe wheel at first use and run by the LiteRT interpreter (``ai-edge-litert``) with
``experimental_preserve_all_tensors=True`` so that its intermediate maps can be read. Nothing is
downloaded and none of its weights are ever copied into a neuralfit checkpoint: a network with this
backbone stores only its own decoder / heads and the per-channel standardisation below.

Two engines run the same graph: the LiteRT interpreter (CPU, ~17 ms per crop on one idle thread with all
tensors kept) and a PyTorch port (:mod:`neuralfit.nets.blazepose_port`, weights read from the same file,
matched against the interpreter tensor by tensor; it computes only the ops the levels depend on, 11-15 ms
per crop on one thread, batches, and runs wherever its input is; docs/network.md has the measurements).
``engine="auto"`` uses the interpreter for CPU inputs and the port for any other device, and the port
everywhere when ``ai-edge-litert`` (the optional ``ghum`` extra) is not installed: the port needs only
mediapipe's file and the ``flatbuffers`` runtime mediapipe brings, so GHUM networks load on the default install.

Levels (on GHUM's 256 x 256 input, NHWC in the file, NCHW here):

====== ============================================ ======== ==========
stride tensor in the graph                          channels map at 256
====== ============================================ ======== ==========
4      ``model_1/model/add_11/add`` (decoder)        48       64 x 64
4      ``Identity_3`` (the 39 landmark heatmaps)     39       64 x 64
8      ``model_1/model/add_10/add`` (decoder)        48       32 x 32
16     ``model_1/model/add_5/add`` (encoder)         88       16 x 16
32     ``model_1/model/add_8/add`` (encoder)         144      8 x 8
====== ============================================ ======== ==========

The backbone returns the decoder's usual ``skips`` at strides (2, 4, 8, 16, 32): stride 2 is empty (0
channels; the U-Net decoder never reads it), stride 4 is the decoder map and the heatmaps concatenated
(87 channels). Each level is standardised per channel with statistics stored as buffers (filled from
training crops by :meth:`BlazePoseGHUMBackbone.set_standardisation`): the raw maps range from std ~1
(decoder) to ~40 (encoder residual stream).

Crop convention: GHUM reads a square 256 x 256 person ROI with values in [0, 1]. The package's crops are
SPIN-style squares (``center``, ``scale`` = side / 200) at ``res`` pixels; the same square is GHUM's ROI
(no rotation: the synthetic engine's roll is ~5 deg, and photos are cropped upright), so a crop maps to
GHUM's input by a pure scale ``256 / res`` (:func:`crop_to_ghum`, :func:`ghum_to_crop`). With
``res = 256`` (the GHUM network's default) the crop *is* GHUM's input; other sizes are resampled to 256
and the levels back to ``res / stride``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuralfit.errors import NeuralfitError

#: GHUM's input side in pixels.
GHUM_RES = 256
#: (stride, tensor name, channels) of the levels read from the graph, in the order they are concatenated.
GHUM_LEVELS: tuple[tuple[int, str, int], ...] = (
    (4, "model_1/model/add_11/add", 48),
    (4, "Identity_3", 39),
    (8, "model_1/model/add_10/add", 48),
    (16, "model_1/model/add_5/add", 88),
    (32, "model_1/model/add_8/add", 144),
)
#: Channels of the skips at strides 2, 4, 8, 16, 32 (stride 2 is empty).
GHUM_CHANNELS = (0, 48 + 39, 48, 88, 144)
_INTERPRETER_HINT = "pip install ai-edge-litert==2.3.0"


def default_model_path() -> Path:
    """``pose_landmark_full.tflite`` inside the installed mediapipe wheel (found without importing mediapipe)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise NeuralfitError("the BlazePose GHUM backbone needs mediapipe installed (pip install mediapipe)")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "modules" / "pose_landmark" / "pose_landmark_full.tflite"


def check_model_file(path: str | Path | None) -> Path:
    """The trunk file to use (``None`` = mediapipe's); NeuralfitError when it is missing."""
    p = default_model_path() if path is None else Path(path)
    if not p.is_file():
        raise NeuralfitError(f"BlazePose GHUM model file {p} not found: expected mediapipe's pose_landmark_full.tflite")
    return p


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise NeuralfitError(f"the BlazePose GHUM backbone needs the LiteRT interpreter: {_INTERPRETER_HINT}") from exc
    return Interpreter


def interpreter_available() -> bool:
    """Whether ``ai-edge-litert`` is importable (tests skip without it)."""
    return importlib.util.find_spec("ai_edge_litert") is not None


def trunk_available() -> bool:
    """Whether the interpreter and mediapipe's trunk file are both here (what the backbone needs on CPU)."""
    try:
        return interpreter_available() and default_model_path().is_file()
    except NeuralfitError:
        return False


# -- crop convention ----------------------------------------------------------------------------------------

def crop_to_ghum(uv: np.ndarray | torch.Tensor, res: int) -> np.ndarray | torch.Tensor:
    """Crop pixel coordinates (continuous; pixel (i, j) covers [j, j+1) x [i, i+1)) -> GHUM input pixels."""
    return uv * (GHUM_RES / float(res))


def ghum_to_crop(uv: np.ndarray | torch.Tensor, res: int) -> np.ndarray | torch.Tensor:
    """GHUM input pixels -> crop pixels of a ``res`` crop (inverse of :func:`crop_to_ghum`)."""
    return uv * (float(res) / GHUM_RES)


def spin_box_to_ghum_roi(center: np.ndarray, scale: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """SPIN crop (center (.., 2) photo px, scale = side / 200) -> GHUM ROI (center, side in photo px), upright."""
    return np.asarray(center, dtype=np.float64), 200.0 * np.asarray(scale, dtype=np.float64)


def ghum_roi_to_spin_box(center: np.ndarray, side: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`spin_box_to_ghum_roi`: GHUM ROI (center, side px) -> SPIN (center, scale)."""
    return np.asarray(center, dtype=np.float64), np.asarray(side, dtype=np.float64) / 200.0


# -- the trunk ----------------------------------------------------------------------------------------------

@dataclass
class GHUMTrunkConfig:
    """Where the trunk comes from and how it runs.

    Attributes:
        model_path: the ``.tflite`` file; ``None`` = the installed mediapipe wheel's ``pose_landmark_full.tflite``.
        num_threads: interpreter threads; ``None`` = ``torch.get_num_threads()``.
    """

    model_path: str | None = None
    num_threads: int | None = None


class GHUMTrunk:
    """The LiteRT interpreter over GHUM's graph, returning the levels of :data:`GHUM_LEVELS` per image."""

    def __init__(self, config: GHUMTrunkConfig | None = None):
        self.config = config or GHUMTrunkConfig()
        self.path = check_model_file(self.config.model_path)
        self._interp: Any = None
        self._ids: list[int] = []

    def _open(self) -> Any:
        if self._interp is None:
            interp_cls = _interpreter_class()
            threads = self.config.num_threads or torch.get_num_threads()
            import warnings

            with warnings.catch_warnings():  # LiteRT warns that keeping all tensors costs memory: we want them
                warnings.simplefilter("ignore")
                try:
                    interp = interp_cls(model_path=str(self.path), experimental_preserve_all_tensors=True,
                                        num_threads=threads)
                    interp.allocate_tensors()
                except (ValueError, RuntimeError) as exc:
                    raise NeuralfitError(f"cannot open BlazePose GHUM model {self.path}: {str(exc)[:120]}") from exc
            by_name = {d["name"]: d for d in interp.get_tensor_details()}
            ids = []
            for _, name, ch in GHUM_LEVELS:
                d = by_name.get(name)
                if d is None or int(d["shape"][-1]) != ch:
                    raise NeuralfitError(f"{self.path} is not mediapipe's pose_landmark_full model (no tensor {name})")
                ids.append(int(d["index"]))
            inp = interp.get_input_details()[0]
            if tuple(int(s) for s in inp["shape"]) != (1, GHUM_RES, GHUM_RES, 3):
                raise NeuralfitError(f"{self.path}: expected a 1x256x256x3 input, got {list(inp['shape'])}")
            self._input_id = int(inp["index"])
            self._interp, self._ids = interp, ids
        return self._interp

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        """(B, 256, 256, 3) float32 RGB in [0, 1] -> levels, each (B, h, w, C) float32 (NHWC)."""
        interp = self._open()
        if images.ndim != 4 or images.shape[1:] != (GHUM_RES, GHUM_RES, 3):
            raise NeuralfitError(f"GHUM trunk input must be (B, 256, 256, 3), got {tuple(images.shape)}")
        out: list[list[np.ndarray]] = [[] for _ in self._ids]
        for img in images:  # the graph has batch 1 (its landmark reshapes are fixed)
            interp.set_tensor(self._input_id, np.ascontiguousarray(img[None], dtype=np.float32))
            interp.invoke()
            for k, i in enumerate(self._ids):
                out[k].append(interp.get_tensor(i)[0].copy())  # copy: the buffers are reused by the next invoke
        return [np.stack(o) for o in out]


class BlazePoseGHUMBackbone(nn.Module):
    """Frozen GHUM trunk -> standardised skips at strides 2..32 and a pooled stride-32 vector.

    Args:
        weights: path of the ``.tflite`` trunk (``None`` = mediapipe's); never a torch file.
        num_threads: interpreter threads (default: torch's).
        engine: ``"auto"`` (interpreter on CPU when ``ai-edge-litert`` is installed, the PyTorch port otherwise
            and on other devices), ``"interpreter"`` or ``"torch"``.

    ``forward(x)``: (B, 3, R, R) RGB in [0, 1], R a multiple of 32 -> (skips, pooled (B, 144)).
    :meth:`feed` hands precomputed trunk levels (from :meth:`trunk_levels`) to the next ``forward``,
    which then skips the interpreter: that is how cached-feature head training reuses the network.
    """

    channels = GHUM_CHANNELS
    pooled_channels = 144

    def __init__(self, weights: str | None = None, num_threads: int | None = None, engine: str = "auto"):
        super().__init__()
        if engine not in ("auto", "interpreter", "torch"):
            raise NeuralfitError(f"GHUM engine must be 'auto', 'interpreter' or 'torch', got {engine!r}")
        self.engine = engine
        self.trunk = GHUMTrunk(GHUMTrunkConfig(model_path=weights, num_threads=num_threads))
        self._port: Any = None
        if engine == "interpreter" and not interpreter_available():
            raise NeuralfitError(f"the BlazePose GHUM backbone needs the LiteRT interpreter: {_INTERPRETER_HINT}")
        for k, (_, _, ch) in enumerate(GHUM_LEVELS):
            self.register_buffer(f"level{k}_mean", torch.zeros(ch))
            self.register_buffer(f"level{k}_std", torch.ones(ch))
        self._fed: list[torch.Tensor] | None = None

    # The interpreter is a C++ object: copies / pickles of the module reopen it lazily.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["trunk"] = GHUMTrunk(self.trunk.config)
        state["_fed"] = None
        state["_port"] = None
        return state

    def uses_port(self, device: torch.device | str = "cpu") -> bool:
        """Whether inputs on ``device`` run through the PyTorch port (else the LiteRT interpreter)."""
        if self.engine != "auto":
            return self.engine == "torch"
        return torch.device(device).type != "cpu" or not interpreter_available()

    def port(self) -> Any:
        """The PyTorch port of the trunk (:class:`~neuralfit.nets.blazepose_port.GHUMTorchPort`), built at first use."""
        if self._port is None:
            from neuralfit.nets.blazepose_port import GHUMTorchPort

            self._port = GHUMTorchPort(self.trunk.path)
        return self._port

    def stages(self) -> list[nn.Module]:
        """No trainable stages: the trunk lives in the interpreter and stays frozen."""
        return []

    @torch.no_grad()
    def trunk_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw (unstandardised) levels of (B, 3, R, R) images in [0, 1], each (B, C, R/s, R/s), on x's device."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise NeuralfitError(f"backbone input must have shape (B, 3, H, W), got {tuple(x.shape)}")
        res_h, res_w = int(x.shape[-2]), int(x.shape[-1])
        g = x.detach().float()
        if (res_h, res_w) != (GHUM_RES, GHUM_RES):
            g = F.interpolate(g, size=(GHUM_RES, GHUM_RES), mode="bilinear", align_corners=False,
                              antialias=res_h > GHUM_RES)
        g = g.clamp(0, 1)
        if self.uses_port(x.device):
            got = self.port()(g, keep=[name for _, name, _ in GHUM_LEVELS])
            raw = [got[name] for _, name, _ in GHUM_LEVELS]
        else:
            nhwc = g.permute(0, 2, 3, 1).cpu().numpy()
            raw = [torch.from_numpy(arr).permute(0, 3, 1, 2) for arr in self.trunk(nhwc)]
        levels = []
        for (stride, _, _), t in zip(GHUM_LEVELS, raw, strict=True):
            t = t.to(x.device)
            size = (res_h // stride, res_w // stride)
            if tuple(t.shape[-2:]) != size:  # back onto the crop's own stride grid (same square, pixel centres)
                t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
            levels.append(t.contiguous())
        return levels

    def feed(self, levels: Sequence[torch.Tensor]) -> None:
        """Use these raw levels (as from :meth:`trunk_levels`) in the next ``forward`` instead of the interpreter."""
        if len(levels) != len(GHUM_LEVELS):
            raise NeuralfitError(f"expected {len(GHUM_LEVELS)} GHUM levels, got {len(levels)}")
        self._fed = [t.float() for t in levels]

    @torch.no_grad()
    def set_standardisation(self, means: Sequence[torch.Tensor], stds: Sequence[torch.Tensor]) -> None:
        """Per-channel statistics of the raw levels (training crops), applied in every ``forward``."""
        for k in range(len(GHUM_LEVELS)):
            getattr(self, f"level{k}_mean").copy_(torch.as_tensor(means[k]).float())
            getattr(self, f"level{k}_std").copy_(torch.as_tensor(stds[k]).float().clamp_min(1e-3))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        levels, self._fed = (self._fed, None) if self._fed is not None else (self.trunk_levels(x), None)
        std = []
        for k, t in enumerate(levels):
            m = getattr(self, f"level{k}_mean").reshape(1, -1, 1, 1)
            s = getattr(self, f"level{k}_std").reshape(1, -1, 1, 1)
            std.append((t.to(m.device) - m) / s)
        s4 = torch.cat([std[0], std[1]], dim=1)
        b, _, h4, w4 = s4.shape
        s2 = s4.new_zeros(b, 0, 2 * h4, 2 * w4)  # the U-Net decoder never reads stride 2
        return [s2, s4, std[2], std[3], std[4]], std[4].mean(dim=(2, 3))
