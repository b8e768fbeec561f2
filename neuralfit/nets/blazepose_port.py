"""A PyTorch port of BlazePose GHUM's graph, built from the ``.tflite`` flatbuffer at first use.

The graph holds only CONV_2D, DEPTHWISE_CONV_2D, ADD, PAD, RESIZE_BILINEAR, MAX_POOL_2D, RESHAPE, LOGISTIC
and DEQUANTIZE (float16 weights), so a small executor replays it op by op in NCHW. The weights are read
from mediapipe's installed file into non-persistent buffers: they never enter a checkpoint. It batches
and follows its inputs' device (a GPU, when there is one); on CPU the LiteRT interpreter is faster
(docs/network.md, "BlazePose GHUM features"), so :class:`~neuralfit.nets.blazepose.BlazePoseGHUMBackbone`
uses the interpreter and this port is checked against it tensor by tensor (tests/test_blazepose_backbone.py).

Reading the flatbuffer needs the ``tflite`` package (``pip install tflite==2.18.0``, Apache-2.0).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuralfit.errors import NeuralfitError

_NP_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}


def _schema() -> Any:
    try:
        import tflite
    except ImportError as exc:
        raise NeuralfitError("the PyTorch port of BlazePose GHUM reads the model with `pip install tflite==2.18.0`") from exc
    return tflite


def _same_pad(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding (extra pixel after, not before)."""
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _act(x: torch.Tensor, code: int) -> torch.Tensor:
    if code == 0:
        return x
    if code == 1:
        return F.relu(x)
    if code == 3:
        return x.clamp(0.0, 6.0)
    raise NeuralfitError(f"GHUM port: fused activation {code} is not supported")


class GHUMTorchPort(nn.Module):
    """Replays the graph of ``path``; ``forward(x)`` (B, 3, 256, 256) in [0, 1] -> {tensor name: NCHW tensor}.

    ``keep`` names the tensors to return (default: the graph outputs); intermediate NHWC tensors come
    back as NCHW, 2D ones unchanged.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        tfl = _schema()
        path = Path(path)
        if not path.is_file():
            raise NeuralfitError(f"BlazePose GHUM model file {path} not found")
        buf = path.read_bytes()
        try:
            model = tfl.Model.GetRootAsModel(buf, 0)
            graph = model.Subgraphs(0)
        except Exception as exc:  # a file that is no flatbuffer fails deep inside the generated reader
            raise NeuralfitError(f"{path} is not a TF-Lite model: {str(exc)[:100]}") from exc
        self._tfl = tfl
        names = {v: k for k, v in tfl.BuiltinOperator.__dict__.items() if not k.startswith("_")}
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        self.tensor_names = [graph.Tensors(i).Name().decode() for i in range(graph.TensorsLength())]
        self.tensor_shapes = [tuple(int(v) for v in graph.Tensors(i).ShapeAsNumpy()) if graph.Tensors(i).ShapeLength()
                              else () for i in range(graph.TensorsLength())]
        self.input_id = int(graph.InputsAsNumpy()[0])
        self.output_ids = [int(i) for i in graph.OutputsAsNumpy()]
        self.consts: dict[int, np.ndarray] = {}
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            data = model.Buffers(t.Buffer()).DataAsNumpy()
            if isinstance(data, np.ndarray) and data.size:
                self.consts[i] = np.frombuffer(data.tobytes(), dtype=_NP_TYPES[t.Type()]).reshape(self.tensor_shapes[i])
        self.ops: list[tuple[str, list[int], list[int], Any]] = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            c = codes[op.OpcodeIndex()]
            self.ops.append((names[max(c.BuiltinCode(), c.DeprecatedBuiltinCode())], [int(v) for v in op.InputsAsNumpy()],
                             [int(v) for v in op.OutputsAsNumpy()], op.BuiltinOptions()))
        self._weights: dict[int, torch.Tensor] = {}
        self._prepare()

    def _opts(self, cls_name: str, table: Any) -> Any:
        cls = getattr(self._tfl, cls_name)
        o = cls()
        o.Init(table.Bytes, table.Pos)
        return o

    def _prepare(self) -> None:
        """Dequantise constants once and lay conv weights out as torch expects (OIHW)."""
        f32 = {i: a.astype(np.float32) for i, a in self.consts.items() if a.dtype != np.int32}
        for name, ins, outs, _ in self.ops:
            if name == "DEQUANTIZE" and ins[0] in f32:
                f32[outs[0]] = f32[ins[0]]
        for name, ins, _, _ in self.ops:
            if name == "CONV_2D":
                self._weights[ins[1]] = torch.from_numpy(f32[ins[1]]).permute(0, 3, 1, 2).contiguous()
            elif name == "DEPTHWISE_CONV_2D":
                self._weights[ins[1]] = torch.from_numpy(f32[ins[1]]).permute(3, 0, 1, 2).contiguous()
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) > 2 and ins[2] >= 0:
                self._weights[ins[2]] = torch.from_numpy(f32[ins[2]])
        for i, a in f32.items():
            if i not in self._weights and a.ndim >= 1:
                w = torch.from_numpy(a)
                self._weights[i] = w.permute(0, 3, 1, 2).contiguous() if w.ndim == 4 else w

    def _w(self, i: int, like: torch.Tensor) -> torch.Tensor:
        w = self._weights[i]
        if w.device != like.device:
            w = self._weights[i] = w.to(like.device)
        return w

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, o: Any, groups: int) -> torch.Tensor:
        sh, sw = o.StrideH(), o.StrideW()
        dh, dw = o.DilationHFactor() or 1, o.DilationWFactor() or 1
        kh, kw = w.shape[-2:]
        if o.Padding() == 0:  # SAME
            (pt, pb), (pl, pr) = _same_pad(x.shape[-2], kh, sh, dh), _same_pad(x.shape[-1], kw, sw, dw)
            x = F.pad(x, (pl, pr, pt, pb))
        return F.conv2d(x, w, b, stride=(sh, sw), dilation=(dh, dw), groups=groups)

    def forward(self, x: torch.Tensor, keep: list[str] | None = None) -> dict[str, torch.Tensor]:
        want = set(self.output_ids) if keep is None else {self.tensor_names.index(n) for n in keep}
        vals: dict[int, torch.Tensor] = {self.input_id: x.float()}
        out: dict[str, torch.Tensor] = {}
        for name, ins, outs, table in self.ops:
            if name == "DEQUANTIZE":
                continue
            a = vals.get(ins[0])
            if name == "CONV_2D":
                o = self._opts("Conv2DOptions", table)
                y = _act(self._conv(a, self._w(ins[1], a), self._w(ins[2], a) if len(ins) > 2 and ins[2] >= 0 else None,
                                    o, 1), o.FusedActivationFunction())
            elif name == "DEPTHWISE_CONV_2D":
                o = self._opts("DepthwiseConv2DOptions", table)
                y = _act(self._conv(a, self._w(ins[1], a), self._w(ins[2], a) if len(ins) > 2 and ins[2] >= 0 else None,
                                    o, a.shape[1]), o.FusedActivationFunction())
            elif name == "ADD":
                o = self._opts("AddOptions", table)
                b = vals[ins[1]] if ins[1] in vals else self._w(ins[1], a)
                y = _act(a + b, o.FusedActivationFunction())
            elif name == "PAD":
                p = self.consts[ins[1]]  # (4, 2) NHWC
                y = F.pad(a, (int(p[2, 0]), int(p[2, 1]), int(p[1, 0]), int(p[1, 1]), int(p[3, 0]), int(p[3, 1])))
            elif name == "RESIZE_BILINEAR":
                o = self._opts("ResizeBilinearOptions", table)
                size = tuple(int(v) for v in self.consts[ins[1]])
                if not o.HalfPixelCenters() and not o.AlignCorners():
                    raise NeuralfitError("GHUM port: legacy asymmetric bilinear resize is not supported")
                y = F.interpolate(a, size=size, mode="bilinear", align_corners=bool(o.AlignCorners()))
            elif name == "MAX_POOL_2D":
                o = self._opts("Pool2DOptions", table)
                k, s = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
                if o.Padding() == 0:
                    (pt, pb), (pl, pr) = _same_pad(a.shape[-2], k[0], s[0]), _same_pad(a.shape[-1], k[1], s[1])
                    a = F.pad(a, (pl, pr, pt, pb), value=float("-inf"))
                y = _act(F.max_pool2d(a, k, s), o.FusedActivationFunction())
            elif name == "RESHAPE":
                shape = self.tensor_shapes[outs[0]]
                nhwc = a.permute(0, 2, 3, 1) if a.ndim == 4 else a
                y = nhwc.reshape(a.shape[0], *shape[1:])
                if y.ndim == 4:
                    y = y.permute(0, 3, 1, 2)
            elif name == "LOGISTIC":
                y = torch.sigmoid(a)
            else:
                raise NeuralfitError(f"GHUM port: operator {name} is not supported")
            vals[outs[0]] = y
            if outs[0] in want:
                out[self.tensor_names[outs[0]]] = y
                if len(out) == len(want):  # the rest of the graph (landmarks, segmentation) is not needed
                    break
        return out
