"""CPU inference speed of the multi-task network (issue 6 target: <= 100 ms per crop at the default size).

Times ``predict``-equivalent forward passes (backbone + decoder + all heads + regressor, no grad, eval
mode) for a few input sizes and feature dimensions, at batch 1 and batch 8, and prints a table of
milliseconds per crop (median and best of the timed runs after warm-up).

    OMP_NUM_THREADS=2 python benchmarks/net_speed.py [--res 192 224 256] [--dims 64 128] [--runs 10]
    OMP_NUM_THREADS=1 python benchmarks/net_speed.py --network neuralfit/nets/assets/ghum.pt --batches 1  # a checkpoint
    OMP_NUM_THREADS=1 python benchmarks/net_speed.py --ghum --batches 1   # the BlazePose GHUM architecture, untrained
    OMP_NUM_THREADS=1 python benchmarks/net_speed.py --network neuralfit/nets/assets/ghum.pt --engine torch  # GHUM's port
    OMP_NUM_THREADS=2 python benchmarks/net_speed.py --ghum-port [--threads 1 2] [--batches 1 8] [--runs 10]

``--ghum-port`` (issue 19's speed gate, 60 ms per crop) times, in one run and interleaved call by call
so that a change of load hits every row alike: the shipped default network, the shipped GHUM network
through the PyTorch port's plain replay (``GHUMTorchPort.reference``, the port before issue 19's
optimisation) and through its planned executor (what runs), the port's trunk alone both ways, and the
LiteRT interpreter when ``ai-edge-litert`` is importable; at each thread count and batch, with the
machine, ``uptime`` before and after and the load average per row.

Wall-clock times depend on what else runs on the machine. With as many threads as cores and another
process busy on one of them, OpenMP's spinning barriers can cost seconds per call;
``OMP_WAIT_POLICY=PASSIVE`` (read at start-up) makes the waiting threads sleep instead. The last column is the *CPU time* the
process used per crop (``time.process_time``): it does not count time spent waiting for a core, so on
a shared machine it is the robust figure; with one thread it equals the uncontended single-core
latency, with N threads the uncontended wall time is roughly CPU time / N (less with imperfect scaling).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

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
    ap.add_argument("--ghum-port", action="store_true",
                    help="issue 19: the GHUM port before / after its optimisation beside the default network")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="--ghum-port: torch thread counts")
    args = ap.parse_args()
    if args.ghum_port:
        time_ghum_port(args)
        return
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


def _machine() -> str:
    import os
    import platform

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def _uptime() -> str:
    import os
    import subprocess

    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def time_interleaved(calls: dict, x: torch.Tensor, runs: int) -> dict[str, tuple[float, float, float]]:
    """:func:`time_forward` for several callables, one call of each in turn per run: (median, best, CPU) ms/crop."""
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    with torch.inference_mode():
        for f in calls.values():
            for _ in range(2):  # warm-up: allocator, oneDNN kernel selection, the port's plans
                f(x)
        for _ in range(runs):
            for k, f in calls.items():
                t0, c0 = time.perf_counter(), time.process_time()
                f(x)
                wall[k].append((time.perf_counter() - t0) * 1000.0 / x.shape[0])
                cpu[k].append((time.process_time() - c0) * 1000.0 / x.shape[0])
    return {k: (statistics.median(wall[k]), min(wall[k]), statistics.median(cpu[k])) for k in calls}


def time_ghum_port(args: argparse.Namespace) -> None:
    """Issue 19: GHUM's PyTorch port before / after, beside the default network, in one interleaved run."""
    import importlib.util
    import os

    import neuralfit.nets as nets_pkg
    from neuralfit.body import load_body_model
    from neuralfit.nets import load_network
    from neuralfit.nets.blazepose import GHUM_LEVELS, GHUMTrunk, GHUMTrunkConfig

    assets = Path(nets_pkg.__file__).parent / "assets"
    body = load_body_model(args.body)
    default = load_network(assets / "lite0.pt", body)
    ghum = load_network(assets / "ghum.pt", body)
    ghum.backbone.engine = "torch"
    port = ghum.backbone.port()
    levels = [name for _, name, _ in GHUM_LEVELS]

    def with_port(fast: bool, f):
        def call(x):
            port.fast = fast
            return f(x)
        return call

    def whole(net):
        return lambda x: net(net.normalise(x[..., :net.config.input_res, :net.config.input_res]))

    calls = {
        "default network (EfficientNet-Lite0, 224)": whole(default),
        "GHUM network, port before (plain replay)": with_port(False, whole(ghum)),
        "GHUM network, port after (planned)": with_port(True, whole(ghum)),
        "GHUM trunk only, port before": with_port(False, lambda x: port(x, levels)),
        "GHUM trunk only, port after": with_port(True, lambda x: port(x, levels)),
    }
    if importlib.util.find_spec("ai_edge_litert") is not None:
        interp = load_network(assets / "ghum.pt", body)
        interp.backbone.engine = "interpreter"
        calls["GHUM network, LiteRT interpreter"] = whole(interp)
    print(f"machine: {_machine()}")
    env = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    print(f"torch {torch.__version__}; " + ", ".join(f"{k}={v}" for k, v in env.items()) + "; "
          f"{args.runs} timed runs per row after 2 warm-up calls, rows interleaved call by call")
    print(f"before: {_uptime()}")
    print(f"{'network':>44} {'threads':>7} {'batch':>5} {'wall ms/crop med':>16} {'best':>6} {'CPU ms/crop':>11} "
          f"{'load 1m':>7}")
    gate = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        if "GHUM network, LiteRT interpreter" in calls:  # the interpreter fixes its thread count when it opens
            interp.backbone.trunk = GHUMTrunk(GHUMTrunkConfig(num_threads=threads))
        for b in args.batches:
            x = torch.rand(b, 3, 256, 256)  # the default network reads its 224 corner (same cost as a resized crop)
            load = os.getloadavg()[0]
            for name, (med, best, cpu) in time_interleaved(calls, x, args.runs).items():
                print(f"{name:>44} {threads:>7} {b:>5} {med:>16.1f} {best:>6.1f} {cpu:>11.1f} {load:>7.2f}", flush=True)
                if name == "GHUM network, port after (planned)":
                    gate.append(f"{threads} thr / batch {b}: {med:.1f} ms {'<=' if med <= 60 else '>'} 60")
    print(f"after: {_uptime()}")
    print("gate (GHUM network through the port, median wall ms/crop): " + "; ".join(gate))


if __name__ == "__main__":
    main()
