"""CPU inference speed of the multi-task network (issue 6 target: <= 100 ms per crop at the default size).

Times ``predict``-equivalent forward passes (backbone + decoder + all heads + regressor, no grad, eval
mode) for a few input sizes and feature dimensions, at batch 1 and batch 8, and prints a table of
milliseconds per crop (median and best of the timed runs after warm-up).

    OMP_NUM_THREADS=2 python benchmarks/net_speed.py [--res 192 224 256] [--dims 64 128] [--runs 10]
    OMP_NUM_THREADS=1 python benchmarks/net_speed.py --network neuralfit/nets/assets/ghum.pt --batches 1  # a checkpoint
    OMP_NUM_THREADS=1 python benchmarks/net_speed.py --ghum --batches 1   # the BlazePose GHUM architecture, untrained
    OMP_NUM_THREADS=1 python benchmarks/net_speed.py --network neuralfit/nets/assets/ghum.pt --engine torch  # GHUM's port

Wall-clock times depend on what else runs on the machine. The last column is the *CPU time* the
process used per crop (``time.process_time``): it does not count time spent waiting for a core, so on
a shared machine it is the robust figure; with one thread it equals the uncontended single-core
latency, with N threads the uncontended wall time is roughly CPU time / N (less with imperfect scaling).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def time_forward(net, batch: int, res: int, runs: int) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU time) in milliseconds per crop."""
    x = torch.rand(batch, 3, res, res)
    wall, cpu = [], []
    with torch.inference_mode():
        for _ in range(2):  # warm-up: allocator, oneDNN kernel selection
            net(net.normalise(x))
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            net(net.normalise(x))
            wall.append((time.perf_counter() - t0) * 1000.0 / batch)
            cpu.append((time.process_time() - c0) * 1000.0 / batch)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def main() -> None:
    from neuralfit.nets import MultiTaskNet, NetConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, nargs="+", default=[192, 224, 256])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--network", action="append", default=[], help="time this checkpoint instead (repeatable)")
    ap.add_argument("--ghum", action="store_true", help="time the BlazePose GHUM network's architecture instead")
    ap.add_argument("--body", default="free")
    ap.add_argument("--engine", choices=("auto", "interpreter", "torch"), default=None,
                    help="GHUM networks: run the trunk with this engine (torch = the PyTorch port, what the "
                         "default install without the `ghum` extra uses)")
    args = ap.parse_args()
    if args.network or args.ghum:
        time_checkpoints(args)
        return

    default = NetConfig()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; default: res {default.input_res}, "
          f"D {default.feature_dim}, backbone {default.backbone}")
    print(f"{'res':>5} {'D':>5} {'batch':>6} {'wall ms/crop med':>17} {'wall best':>10} {'CPU ms/crop':>12}")
    for res in args.res:
        for d in args.dims:
            net = MultiTaskNet(NetConfig(input_res=res, feature_dim=d)).eval()
            for b in args.batches:
                med, best, cpu = time_forward(net, b, res, args.runs)
                mark = "  <- default" if (res, d) == (default.input_res, default.feature_dim) else ""
                print(f"{res:>5} {d:>5} {b:>6} {med:>17.1f} {best:>10.1f} {cpu:>12.1f}{mark}", flush=True)
    n_params = sum(p.numel() for p in MultiTaskNet(default).parameters()) / 1e6
    print(f"default network: {n_params:.2f} M parameters")


def time_checkpoints(args: argparse.Namespace) -> None:
    """Per-crop times of stored networks (any backbone) or of the GHUM architecture, at their own input size."""
    from neuralfit.nets import MultiTaskNet, load_network

    nets = []
    if args.ghum:
        from neuralfit.training.ghum_heads import GHUMHeadsConfig

        nets.append(("blazepose-ghum (untrained heads)", MultiTaskNet(GHUMHeadsConfig().net_config()).eval()))
    if args.network:
        from neuralfit.body import load_body_model

        body = load_body_model(args.body)
        nets += [(p, load_network(p, body)) for p in args.network]
    if args.engine is not None:
        for i, (name, net) in enumerate(nets):
            if net.config.backbone == "blazepose-ghum":
                net.backbone.engine = args.engine
                nets[i] = (f"{name} [{args.engine}]", net)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'network':>40} {'res':>5} {'batch':>6} {'wall ms/crop med':>17} {'wall best':>10} {'CPU ms/crop':>12}")
    for name, net in nets:
        res = net.config.input_res
        for b in args.batches:
            med, best, cpu = time_forward(net, b, res, args.runs)
            print(f"{name[-40:]:>40} {res:>5} {b:>6} {med:>17.1f} {best:>10.1f} {cpu:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
