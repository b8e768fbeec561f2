"""A PyTorch port of BlazePose GHUM's graph, built from the ``.tflite`` flatbuffer at first use.

The graph holds only CONV_2D, DEPTHWISE_CONV_2D, ADD, PAD, RESIZE_BILINEAR, MAX_POOL_2D, RESHAPE, LOGISTIC
and DEQUANTIZE (float16 weights), so a small executor replays it op by op in NCHW. The weights are read
from mediapipe's installed file into non-persistent buffers: they never enter a checkpoint. It batches
and follows its inputs' device (a GPU, when there is one); on CPU the LiteRT interpreter is faster
(docs/network.md, "BlazePose GHUM features"), so :class:`~neuralfit.nets.blazepose.BlazePoseGHUMBackbone`
uses the interpreter and this port is checked against it tensor by tensor (tests/test_blazepose_backbone.py).

The flatbuffer is read by a minimal reader of the few TF-Lite schema tables the graph uses (:class:`_schema`),
on the ``flatbuffers`` runtime that mediapipe already depends on: the port needs no optional package, so a
GHUM network runs on the default install (slower than with the ``ghum`` extra's interpreter). The reader's
fields are checked against the ``tflite`` package's generated code when that is installed (tests).
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


class _Table:
    """A flatbuffer table; field ``slot`` k sits at vtable offset 4 + 2 k (the TF-Lite schema's field order)."""

    def __init__(self, buf: Any = None, pos: int = 0):
        from flatbuffers.table import Table

        self._tab = Table(buf if buf is not None else bytearray(), pos)

    def Init(self, buf: Any, pos: int) -> None:  # noqa: N802 (the generated readers' API)
        from flatbuffers.table import Table

        self._tab = Table(buf, pos)

    def _off(self, slot: int) -> int:
        return int(self._tab.Offset(4 + 2 * slot))

    def _scalar(self, slot: int, flags: Any, default: int = 0) -> int:
        o = self._off(slot)
        return self._tab.Get(flags, o + self._tab.Pos) if o else default

    def _len(self, slot: int) -> int:
        o = self._off(slot)
        return self._tab.VectorLen(o) if o else 0

    def _item(self, slot: int, i: int, cls: type) -> Any:
        x = self._tab.Indirect(self._tab.Vector(self._off(slot)) + 4 * i)
        return cls(self._tab.Bytes, x)

    def _numpy(self, slot: int, flags: Any) -> Any:
        o = self._off(slot)
        return self._tab.GetVectorAsNumpy(flags, o) if o else 0


def _flags() -> Any:
    try:
        from flatbuffers import number_types
    except ImportError as exc:  # a mediapipe dependency: present wherever mediapipe is
        raise NeuralfitError("the PyTorch port of BlazePose GHUM needs the `flatbuffers` package") from exc
    return number_types


class _schema:  # noqa: N801 (stands in for the `tflite` module)
    """The TF-Lite schema tables, fields and operator codes the GHUM graph uses, nothing else."""

    class BuiltinOperator:
        ADD = 0
        CONV_2D = 3
        DEPTHWISE_CONV_2D = 4
        DEQUANTIZE = 6
        LOGISTIC = 14
        MAX_POOL_2D = 17
        RESHAPE = 22
        RESIZE_BILINEAR = 23
        PAD = 34

    class Buffer(_Table):
        def DataAsNumpy(self) -> Any:  # noqa: N802
            return self._numpy(0, _flags().Uint8Flags)

    class Tensor(_Table):
        def ShapeAsNumpy(self) -> Any:  # noqa: N802
            return self._numpy(0, _flags().Int32Flags)

        def ShapeLength(self) -> int:  # noqa: N802
            return self._len(0)

        def Type(self) -> int:  # noqa: N802
            return self._scalar(1, _flags().Int8Flags)

        def Buffer(self) -> int:  # noqa: N802
            return self._scalar(2, _flags().Uint32Flags)

        def Name(self) -> bytes:  # noqa: N802
            o = self._off(3)
            return self._tab.String(o + self._tab.Pos) if o else b""

    class OperatorCode(_Table):
        def DeprecatedBuiltinCode(self) -> int:  # noqa: N802
            return self._scalar(0, _flags().Int8Flags)

        def BuiltinCode(self) -> int:  # noqa: N802
            return self._scalar(3, _flags().Int32Flags)

    class Operator(_Table):
        def OpcodeIndex(self) -> int:  # noqa: N802
            return self._scalar(0, _flags().Uint32Flags)

        def InputsAsNumpy(self) -> Any:  # noqa: N802
            return self._numpy(1, _flags().Int32Flags)

        def OutputsAsNumpy(self) -> Any:  # noqa: N802
            return self._numpy(2, _flags().Int32Flags)

        def BuiltinOptions(self) -> Any:  # noqa: N802
            from flatbuffers.table import Table

            o = self._off(4)
            if not o:
                return None
            t = Table(bytearray(), 0)
            self._tab.Union(t, o)
            return t

    class SubGraph(_Table):
        def Tensors(self, i: int) -> Any:  # noqa: N802
            return self._item(0, i, _schema.Tensor)

        def TensorsLength(self) -> int:  # noqa: N802
            return self._len(0)

        def InputsAsNumpy(self) -> Any:  # noqa: N802
            return self._numpy(1, _flags().Int32Flags)

        def OutputsAsNumpy(self) -> Any:  # noqa: N802
            return self._numpy(2, _flags().Int32Flags)

        def Operators(self, i: int) -> Any:  # noqa: N802
            return self._item(3, i, _schema.Operator)

        def OperatorsLength(self) -> int:  # noqa: N802
            return self._len(3)

    class Model(_Table):
        @classmethod
        def GetRootAsModel(cls, buf: bytes, offset: int = 0) -> Any:  # noqa: N802
            import flatbuffers

            n = flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, offset)
            return cls(buf, n + offset)

        def OperatorCodes(self, i: int) -> Any:  # noqa: N802
            return self._item(1, i, _schema.OperatorCode)

        def OperatorCodesLength(self) -> int:  # noqa: N802
            return self._len(1)

        def Subgraphs(self, i: int) -> Any:  # noqa: N802
            return self._item(2, i, _schema.SubGraph)

        def Buffers(self, i: int) -> Any:  # noqa: N802
            return self._item(4, i, _schema.Buffer)

    class Conv2DOptions(_Table):
        def Padding(self) -> int:  # noqa: N802
            return self._scalar(0, _flags().Int8Flags)

        def StrideW(self) -> int:  # noqa: N802
            return self._scalar(1, _flags().Int32Flags)

        def StrideH(self) -> int:  # noqa: N802
            return self._scalar(2, _flags().Int32Flags)

        def FusedActivationFunction(self) -> int:  # noqa: N802
            return self._scalar(3, _flags().Int8Flags)

        def DilationWFactor(self) -> int:  # noqa: N802
            return self._scalar(4, _flags().Int32Flags, 1)

        def DilationHFactor(self) -> int:  # noqa: N802
            return self._scalar(5, _flags().Int32Flags, 1)

    class DepthwiseConv2DOptions(_Table):
        def Padding(self) -> int:  # noqa: N802
            return self._scalar(0, _flags().Int8Flags)

        def StrideW(self) -> int:  # noqa: N802
            return self._scalar(1, _flags().Int32Flags)

        def StrideH(self) -> int:  # noqa: N802
            return self._scalar(2, _flags().Int32Flags)

        def DepthMultiplier(self) -> int:  # noqa: N802
            return self._scalar(3, _flags().Int32Flags)

        def FusedActivationFunction(self) -> int:  # noqa: N802
            return self._scalar(4, _flags().Int8Flags)

        def DilationWFactor(self) -> int:  # noqa: N802
            return self._scalar(5, _flags().Int32Flags, 1)

        def DilationHFactor(self) -> int:  # noqa: N802
            return self._scalar(6, _flags().Int32Flags, 1)

    class AddOptions(_Table):
        def FusedActivationFunction(self) -> int:  # noqa: N802
            return self._scalar(0, _flags().Int8Flags)

    class ResizeBilinearOptions(_Table):
        def AlignCorners(self) -> bool:  # noqa: N802
            return bool(self._scalar(2, _flags().BoolFlags))

        def HalfPixelCenters(self) -> bool:  # noqa: N802
            return bool(self._scalar(3, _flags().BoolFlags))

    class Pool2DOptions(_Table):
        def Padding(self) -> int:  # noqa: N802
            return self._scalar(0, _flags().Int8Flags)

        def StrideW(self) -> int:  # noqa: N802
            return self._scalar(1, _flags().Int32Flags)

        def StrideH(self) -> int:  # noqa: N802
            return self._scalar(2, _flags().Int32Flags)

        def FilterWidth(self) -> int:  # noqa: N802
            return self._scalar(3, _flags().Int32Flags)

        def FilterHeight(self) -> int:  # noqa: N802
            return self._scalar(4, _flags().Int32Flags)

        def FusedActivationFunction(self) -> int:  # noqa: N802
            return self._scalar(5, _flags().Int8Flags)


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

    def __init__(self, path: str | Path, schema: Any = None):
        super().__init__()
        tfl = _schema if schema is None else schema  # schema: the `tflite` package, to cross-check the reader
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
            code = max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
            self.ops.append((names.get(code, f"OP_{code}"), [int(v) for v in op.InputsAsNumpy()],
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
