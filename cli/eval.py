"""``neuralfit eval``: evaluate fitting methods on a test set under an occlusion protocol."""

from __future__ import annotations

import click
from neuralfit.cli.options import (
    check_dataset,
    check_out_file,
    device_option,
    quiet_option,
    threads_option,
    torch_threads,
)


@click.command("eval")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="Test set: a folder with annotations.npz (neuralfit synth) or a SPIN/EFT-style .npz.")
@click.option("--method", "methods", multiple=True, default=("regressor",), show_default=True,
              type=click.Choice(["regressor", "keypoints", "neural", "oracle"]),
              help="Method(s) to compare (repeat). 'oracle' is a stand-in (ground truth + occlusion-dependent "
                   "noise) for checking the protocol without a network.")
@click.option("--occluder", default="none", show_default=True, type=click.Choice(["none", "random", "adv40", "adv80"]),
              help="none: images as they are (test-occluded sets carry their own occluders); random: the data "
                   "engine's random textured occluder; advS: AdvOcc@S (worst patch for the regressor).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Report JSON (written atomically).")
@click.option("--network", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Network checkpoint (neuralfit train network); default: the shipped one.")
@click.option("--neural-model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Neural mesh model (neuralfit train gmm) for 'neural'; default: the shipped one.")
@click.option("--limit", type=int, default=None, help="Evaluate the first N samples only.")
@click.option("--resume", is_flag=True, help="Skip samples already in OUT.cache.jsonl (same settings).")
@click.option("--positions-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Reuse the AdvOcc positions of an earlier report (same images for ablations; no search).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Fitter setting for 'keypoints' and 'neural' (a FitConfig field, docs/fitting.md), e.g. "
                   "--set w_partseg=0 --set outlier=false.")
@click.option("--body", default="free", show_default=True, help="Body model the network was trained for.")
@click.option("--res", default=224, show_default=True, type=int, help="Crop size (the network's input size).")
@click.option("--batch-size", default=8, show_default=True, type=int, help="Samples per method call.")
@click.option("--adv-stride", default=10, show_default=True, type=int, help="AdvOcc stride in 224-px units.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of occluder textures/placements.")
@device_option  # checks cpu | cuda | cuda:N (and that a GPU exists) while parsing
@threads_option
@quiet_option
def eval(data: str, methods: tuple[str, ...], occluder: str, out: str, network: str | None, neural_model: str | None,
         limit: int | None, resume: bool, positions_from: str | None, overrides: tuple[str, ...], body: str, res: int,
         batch_size: int, adv_stride: int, seed: int, device: str, threads: int, quiet: bool) -> None:
    """Evaluate METHODs on DATA (MPJPE, PA-MPJPE, PCKh on LSP-14; visible-joint variants) and write OUT."""
    import json
    import os
    from pathlib import Path

    from neuralfit.errors import NeuralfitError
    from neuralfit.eval.methods import parse_overrides, resolve_methods
    from neuralfit.eval.protocols import EvalConfig, evaluate, load_samples, positions_from_records
    from neuralfit.eval.report import format_table, report_dict, summarize
    from neuralfit.io import save_json

    check_dataset(data)  # the real problem (an empty --data) before any --network complaint
    check_out_file(out)  # OUT and OUT.cache.jsonl go next to each other
    if limit is not None and limit < 1:
        raise NeuralfitError(f"--limit must be >= 1, got {limit}")
    names = list(dict.fromkeys(methods))
    fit_overrides = parse_overrides(overrides)
    if fit_overrides and not {"keypoints", "neural"} & set(names):
        raise NeuralfitError("--set only applies to the fitting methods 'keypoints' and 'neural'")
    cfg = EvalConfig(occluder=occluder, seed=seed, adv_stride=adv_stride, batch_size=batch_size)
    built, search, body_model = resolve_methods(names, network, neural_model, body, fit_overrides, device, seed)
    samples = load_samples(data, limit=limit, body=body_model, res=res)
    positions = None
    if positions_from:
        try:
            positions = positions_from_records(json.loads(Path(positions_from).read_text())["records"])
        except (OSError, ValueError, KeyError) as exc:
            raise NeuralfitError(f"--positions-from {positions_from}: not a neuralfit eval report ({exc})") from None
    real = lambda p: os.path.realpath(p) if p else None  # noqa: E731
    tag = {"data": real(data), "network": real(network), "neural_model": real(neural_model),
           "overrides": fit_overrides, "positions_from": real(positions_from), "res": res, "body": body}
    with torch_threads(threads):
        run = evaluate(samples, built, cfg, regressor=search, cache=f"{out}.cache.jsonl", resume=resume,
                       positions=positions, progress=not quiet, tag=tag, body=body_model)
    summary = summarize(run.records, run.methods)
    save_json(out, report_dict(run))
    click.echo(f"{occluder} on {data}: {len(samples)} samples")
    click.echo(format_table(summary, markdown=False))
    click.echo(f"wrote {out}")
