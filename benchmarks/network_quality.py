"""The network issue's quality numbers on held-out synthetic sets, as a table.

::

    python benchmarks/network_quality.py --network net.pt --data data/test_occluded --data data/test_clean \\
        [--neural-model nm.pt] [--limit 200]
    python benchmarks/network_quality.py --network neuralfit/nets/assets/ghum.pt --data runs/ghum/test_clean \\
        --photo /usr/share/doc/opencv-doc/examples/data/messi5.jpg --pictures runs/ghum/pictures

Per set: the regressor's PA-MPJPE (LSP-14, mm), part-segmentation mIoU, heatmap keypoint PCK@0.1 and the
feature accuracy (visible low-res vertices whose nearest feature-bank entry over all vertex-orientation
classes lies within 2 mesh edges of the true vertex), with the checkpoint's contrastive bank and, with
``--neural-model``, with the MLE means the fit uses.

With ``--photo`` (repeatable) each photo's person (mediapipe) is cropped as ``neuralfit fit`` does, the
network's part map is drawn next to the crop under ``--pictures``, and the table gives the agreement of
its foreground (argmax != background) with mediapipe's person mask: IoU, and the fraction of predicted
body pixels outside the mask (spill into the background). No ground truth: a qualitative check.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", required=True)
    ap.add_argument("--neural-model", default=None)
    ap.add_argument("--data", action="append", default=[], help="neuralfit synth folder (repeat)")
    ap.add_argument("--limit", type=int, default=None, help="images per set (batches of 16)")
    ap.add_argument("--body", default="free")
    ap.add_argument("--photo", action="append", default=[], help="real photo for a part-map picture (repeatable)")
    ap.add_argument("--pictures", default="runs/pictures", help="folder for the --photo pictures")
    args = ap.parse_args()

    from neuralfit.cli.train_nets import open_datasets

    from neuralfit.body import load_body_model
    from neuralfit.nets import load_network
    from neuralfit.training.metrics import evaluate_network

    body = load_body_model(args.body)
    net = load_network(args.network, body)
    net.checkpoint_path = args.network
    nm_bank = None
    if args.neural_model:
        from neuralfit.neural import NeuralMeshModel

        nm_bank = NeuralMeshModel.load(args.neural_model, body=body).features.detach()
    rows = []
    for folder in args.data:
        ds = open_datasets((folder,), net.config.input_res, augment=False)
        t0 = time.time()
        max_batches = None if args.limit is None else -(-args.limit // 16)
        m = evaluate_network(net, ds, body, max_batches=max_batches, progress=False)
        if nm_bank is not None:
            m["feature_acc@2 (MLE means)"] = evaluate_network(net, ds, body, bank=nm_bank, max_batches=max_batches,
                                                              progress=False)["feature_acc@2"]
        rows.append((Path(folder).name, m, time.time() - t0))
    for photo in args.photo:
        photo_part_map(net, body, photo, Path(args.pictures))
    if not rows:
        return
    keys = list(rows[0][1])
    print(f"network {args.network} ({net.config.regressor_input} regressor); {platform.node()}, "
          f"{torch.get_num_threads()} threads")
    print("| set | " + " | ".join(keys) + " | seconds |")
    print("| --- " * (len(keys) + 2) + "|")
    for name, m, sec in rows:
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" if k != "pa_mpjpe_mm" else f"{m[k]:.1f}" for k in keys)
              + f" | {sec:.0f} |")


def photo_part_map(net, body, photo: str, out_dir: Path) -> None:
    """Crop the photo's person like ``neuralfit fit``, draw the part argmax, compare it with mediapipe's mask."""
    import cv2
    import numpy as np

    from neuralfit.data.crop import crop_transform, warp
    from neuralfit.detect.mediapipe_pose import PersonDetector
    from neuralfit.nets import predict
    from neuralfit.pipeline import crop_from_box

    img = cv2.imread(photo, cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {photo}")
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    with PersonDetector() as det:
        found = det(rgb)
    if found is None:
        print(f"{photo}: nobody found")
        return
    res = net.config.input_res
    center, scale = crop_from_box(found.bbox)
    aff = crop_transform(center, scale, res)
    crop = warp(rgb, aff, res)
    parts = predict(net, crop[None])["part_probs"][0].argmax(0).cpu().numpy()  # (res/4, res/4)
    parts = cv2.resize(parts.astype(np.uint8), (res, res), interpolation=cv2.INTER_NEAREST)
    colours = np.asarray(body.part_colors, dtype=np.uint8)[parts]
    overlay = np.where(parts[..., None] > 0, (0.35 * crop + 0.65 * colours).astype(np.uint8), crop // 3)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{Path(photo).stem}_{Path(getattr(net, 'checkpoint_path', 'net')).stem}_{res}.png"
    cv2.imwrite(str(out_dir / name), np.concatenate([crop, overlay, colours], 1)[:, :, ::-1])
    line = f"{photo}: picture {out_dir / name}"
    if found.mask is not None:
        mask = warp(found.mask.astype(np.float32), aff, res) >= 0.5
        fg = parts > 0
        iou = (fg & mask).sum() / max((fg | mask).sum(), 1)
        spill = (fg & ~mask).sum() / max(fg.sum(), 1)
        line += f"; foreground vs mediapipe mask: IoU {iou:.3f}, spill outside {spill:.3f}, " \
                f"{len(np.unique(parts[fg]))} parts present"
    print(line)


if __name__ == "__main__":
    main()
