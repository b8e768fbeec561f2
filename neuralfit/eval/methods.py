"""The methods compared under occlusion, as :data:`neuralfit.eval.protocols.Method` callables.

* ``regressor``: the multi-task network's SMPL regressor alone (the fitter's initialisation);
* ``keypoints``: keypoints-only fit from that initialisation (SMPLify-like: 2D keypoints + priors);
* ``neural``: the full neural fit (feature NLL with the outlier process + keypoints + part segmentation + priors).

Each method maps uint8 (B, R, R, 3) RGB crops to LSP-14 joints in the crop camera frame. Build them
with :func:`build_methods`; ablation variants pass :class:`~neuralfit.fitting.FitConfig` overrides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.eval.protocols import EvalSample, Method, Prediction

METHODS = ("regressor", "keypoints", "neural")


def _joints(body, params: dict[str, torch.Tensor], focal: float, res: int) -> Prediction:
    """Pose the body with SMPL params (B, ...) -> LSP-14 joints, their projections and the params."""
    from neuralfit.render.camera import CropCamera, project

    with torch.no_grad():
        # full=False: only the landmark/low-res support is posed (keypoints need no full mesh; 3x cheaper).
        out = body(betas=params["betas"].float(), global_orient=params["global_orient"].float(),
                   body_pose=params["body_pose"].float(), transl=params["transl"].float(), full=False)
        j = body.keypoints(out, "lsp14")
        uv = project(j, CropCamera(res, focal))
    smpl = {k: v.detach().cpu().numpy() for k, v in params.items()}
    return Prediction(j.double().cpu().numpy(), uv.double().cpu().numpy(), None, smpl)


def regressor_method(net, body, fast: bool = True) -> Method:
    """The network's regressor output as a method.

    ``fast`` runs only what the regressor needs: backbone + regressor for an image regressor; backbone,
    decoder, heatmap head + regressor for a keypoint regressor (no feature or part heads). The AdvOcc
    search calls this on hundreds of patched crops per image. Falls back to
    :func:`neuralfit.nets.predict` when the network does not expose those modules.
    """
    from neuralfit.nets import predict
    from neuralfit.render.camera import CropCamera

    res = int(net.config.input_res)
    can_fast = fast and hasattr(net, "backbone") and hasattr(net, "regressor")
    from_keypoints = getattr(getattr(net, "config", None), "regressor_input", "image") == "keypoints"

    def method(images: np.ndarray, samples: Sequence[EvalSample]) -> Prediction:
        if can_fast:
            from neuralfit.nets.rotations import matrix_to_axis_angle

            net.eval()
            with torch.no_grad():
                x = _image_batch(images, res, net.device)
                skips, pooled = net.backbone(net.normalise(x))
                if from_keypoints:
                    from neuralfit.nets.heads import decode_heatmaps
                    from neuralfit.nets.model import STRIDE, keypoint_vector

                    kp = decode_heatmaps(net.keypoint_head(net.decoder(skips)), STRIDE)
                    out = net.regressor(keypoint_vector(kp, res))
                else:
                    out = net.regressor(pooled)
                aa = matrix_to_axis_angle(out["rotmat"]).reshape(len(x), -1)
                cam = CropCamera(res)
                params = {"global_orient": aa[:, :3], "body_pose": aa[:, 3:], "betas": out["betas"],
                          "transl": cam.transl_from_weak_perspective(out["cam"])}
            return _joints(body, params, cam.f, res)
        obs = predict(net, images)
        params = {k: obs[k] for k in ("global_orient", "body_pose", "betas", "transl")}
        return _joints(body, params, obs["focal"], res)

    return method


def fit_method(net, body, fitter, method: str) -> Method:
    """A :class:`neuralfit.fitting.Fitter` run from the network's observations and regressor start.

    ``method`` ("keypoints" or "neural") picks the observations through
    :func:`neuralfit.fitting.inputs.fit_batch`, the same function ``neuralfit fit`` uses; the fitter's
    config (built with :func:`~neuralfit.fitting.inputs.method_config`) gives the weights and ablations.
    """
    from neuralfit.fitting.inputs import fit_batch, observations_from_prediction, start_from_prediction
    from neuralfit.nets import predict

    def run(images: np.ndarray, samples: Sequence[EvalSample]) -> Prediction:
        pred = predict(net, images)
        batch = fit_batch(start_from_prediction(pred), observations_from_prediction(pred), method)
        r = fitter.fit(batch)
        params = {"global_orient": r.global_orient, "body_pose": r.body_pose, "betas": r.betas, "transl": r.transl}
        return _joints(body, params, float(pred["focal"]), int(pred["res"]))

    return run


def _image_batch(images: np.ndarray, res: int, device: torch.device) -> torch.Tensor:
    """uint8 (B, R, R, 3) RGB crops -> float (B, 3, R, R) in [0, 1] on ``device``."""
    x = torch.as_tensor(np.asarray(images))
    if x.ndim != 4 or tuple(x.shape[1:]) != (res, res, 3):
        raise NeuralfitError(f"crops must be uint8 (B, {res}, {res}, 3) RGB, got {tuple(x.shape)}")
    return (x.permute(0, 3, 1, 2).float() / 255.0).to(device)


def build_methods(names: Sequence[str], network: str, body, neural_model: str | None = None,
                  prior: Any = "default", fit_overrides: dict[str, Any] | None = None,
                  device: str | torch.device = "cpu") -> dict[str, Method]:
    """Build the named methods from checkpoint paths.

    Args:
        names: subset of :data:`METHODS`.
        network: MultiTaskNet checkpoint (``neuralfit train network``).
        body: the body model the network was trained for (``neuralfit.body.load_body_model``).
        neural_model: neural mesh model (``neuralfit train gmm``); required for ``neural``.
        prior: pose prior spec for ``load_pose_prior`` ("default"), an already loaded prior, or None.
        fit_overrides: FitConfig fields for both fits (``--set``; ablations), e.g. ``{"w_partseg": 0}``.
        device: where the network and fitter run.
    """
    from neuralfit.fitting import FitConfig, Fitter
    from neuralfit.fitting.inputs import method_config
    from neuralfit.nets import load_network

    bad = [n for n in names if n not in METHODS]
    if bad:
        raise NeuralfitError(f"unknown method(s) {bad}; expected some of {list(METHODS)}")
    net = load_network(network, body, device=device)
    if isinstance(prior, str):
        from neuralfit.priors import load_pose_prior

        prior = load_pose_prior(prior, device=device)
    out: dict[str, Method] = {}
    for name in names:
        if name == "regressor":
            out[name] = regressor_method(net, body)
        elif name == "keypoints":
            cfg = method_config(name, FitConfig.occluded(**(fit_overrides or {})))
            out[name] = fit_method(net, body, Fitter(body, None, prior, cfg, device=device), name)
        else:
            if neural_model is None:
                raise NeuralfitError("method 'neural' needs --neural-model (a model from `neuralfit train gmm`)")
            from neuralfit.neural import NeuralMeshModel

            nm = NeuralMeshModel.load(neural_model, body=body, device=device)
            cfg = method_config(name, FitConfig.occluded(**(fit_overrides or {})))
            out[name] = fit_method(net, body, Fitter(body, nm, prior, cfg, device=device), name)
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items -> FitConfig overrides (:func:`neuralfit.fitting.config.parse_settings`)."""
    from neuralfit.fitting.config import parse_settings

    return parse_settings(items)


def resolve_methods(names: Sequence[str], network: str | None, neural_model: str | None, body_spec: str = "free",
                    fit_overrides: dict[str, Any] | None = None, device: str = "cpu",
                    oracle_seed: int = 0) -> tuple[dict[str, Method], Method | None, Any]:
    """Methods by name for the CLI and the benchmark; ``oracle`` is the stand-in of
    :func:`~neuralfit.eval.protocols.oracle_method` (no network needed). ``network`` / ``neural_model``
    None = the shipped ones (``neuralfit.assets.default_assets``).

    Returns (methods, the regressor AdvOcc searches with, the body or None).
    """
    from neuralfit.eval.protocols import oracle_method

    real = [n for n in names if n != "oracle"]
    methods: dict[str, Method] = {}
    body = search = None
    if real:
        from neuralfit.assets import default_assets

        shipped_net, shipped_nm = default_assets()
        network = network or (str(shipped_net) if shipped_net else None)
        if "neural" in real:
            neural_model = neural_model or (str(shipped_nm) if shipped_nm else None)
    if real or network is not None:
        if network is None:
            raise NeuralfitError(f"method(s) {real} need --network (a checkpoint from `neuralfit train network`; "
                                 "no network is shipped with this install)")
        from neuralfit.body import load_body_model

        body = load_body_model(body_spec, device=device)
        # The regressor is always built: AdvOcc searches with it even when it is not evaluated.
        built = build_methods(sorted(set(real) | {"regressor"}), network, body, neural_model,
                              fit_overrides=fit_overrides, device=device)
        search = built["regressor"]
        methods = {n: built[n] for n in real}
    if "oracle" in names:
        methods["oracle"] = oracle_method(seed=oracle_seed)
        search = search or methods["oracle"]
    ordered = {n: methods[n] for n in names}
    return ordered, search, body
