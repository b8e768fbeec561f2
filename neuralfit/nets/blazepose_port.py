"""A PyTorch port of BlazePose GHUM's graph, built from the ``.tflite`` flatbuffer at first use.

The graph holds only CONV_2D, DEPTHWISE_CONV_2D, ADD, PAD, RESIZE_BILINEAR, MAX_POOL_2D, RESHAPE, LOGISTIC
and DEQUANTIZE (float16 weights), so a small executor runs it op by op. The weights are read from
mediapipe's installed file into plain tensors: they never enter a checkpoint. It batches and follows its
inputs' device; :class:`~neuralfit.nets.blazepose.BlazePoseGHUMBackbone` uses the LiteRT interpreter on
CPU when that is installed, and this port is checked against it tensor by tensor
(tests/test_blazepose_backbone.py).

Two executors share the op handlers. :meth:`GHUMTorchPort.reference` replays every op in file order up to
the last requested tensor, as the port was first written. :meth:`GHUMTorchPort.forward` (the one used)
runs a plan per requested set: only the ops those tensors depend on (for the backbone's levels that skips
the segmentation branch the file computes first), explicit zero PADs and SAME padding folded into the
convolutions, options read and weights laid out once, activations and residual adds in place where the
operand dies, channels-last maps on CPU. Without channels-last it gives bit-identical tensors; with it,
oneDNN's other summation order moves them by float32 rounding only (tests). docs/network.md, "BlazePose
GHUM features", has the timings.

The flatbuffer is read by a minimal reader of the few TF-Lite schema tables the graph uses (:class:`_schema`),
on the ``flatbuffers`` runtime that mediapipe already depends on: the port needs no optional package, so a
GHUM network runs on the default install. The reader's fields are checked against the ``tflite`` package's
generated code when that is installed (tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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
    """Runs the graph of ``path``; ``forward(x)`` (B, 3, 256, 256) in [0, 1] -> {tensor name: NCHW tensor}.

    ``keep`` names the tensors to return (default: the graph outputs); intermediate NHWC tensors come
    back as contiguous NCHW, 2D ones unchanged. Only the ops they depend on run (see the module notes);
    the plan for each ``keep`` is built at its first call and reused.
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
        #: False: :meth:`forward` is :meth:`reference` (the plain replay), for checks and timings
        self.fast = True
        #: channels-last activations on CPU (oneDNN's depthwise and 1x1 kernels are faster that way)
        self.channels_last = True
        self._plans: dict[tuple[Any, ...], list[_Step]] = {}

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

    # -- the reference executor: every op in file order, as first ported ---------------------------------

    def _run_op(self, name: str, ins: list[int], outs: list[int], table: Any,
                vals: dict[int, torch.Tensor]) -> torch.Tensor:
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
        return y

    def _want(self, keep: list[str] | None) -> list[int]:
        if keep is None:
            return list(self.output_ids)
        try:
            return [self.tensor_names.index(n) for n in keep]
        except ValueError as exc:
            raise NeuralfitError(f"GHUM port: no tensor {str(exc).split()[0]} in the graph") from exc

    def reference(self, x: torch.Tensor, keep: list[str] | None = None) -> dict[str, torch.Tensor]:
        """The plain replay: every op in file order up to the last kept tensor (the check for :meth:`forward`)."""
        want = set(self._want(keep))
        vals: dict[int, torch.Tensor] = {self.input_id: x.float()}
        out: dict[str, torch.Tensor] = {}
        for name, ins, outs, table in self.ops:
            if name == "DEQUANTIZE":
                continue
            y = self._run_op(name, ins, outs, table, vals)
            vals[outs[0]] = y
            if outs[0] in want:
                out[self.tensor_names[outs[0]]] = y
                if len(out) == len(want):
                    break
        return out

    # -- the planned executor ------------------------------------------------------------------------------

    def _plan(self, want: list[int], device: torch.device, channels_last: bool) -> list[_Step]:
        key = (tuple(want), device, channels_last)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._build_plan(set(want), device, channels_last)
        return plan

    def _build_plan(self, want: set[int], device: torch.device, channels_last: bool) -> list[_Step]:
        """The ops ``want`` depends on, with explicit pads folded into convs, options read once, weights laid out.

        The graph computes the segmentation mask (128 and 256 px maps) before the heatmaps, and the
        landmark regression after them: neither is an ancestor of the backbone's levels, so neither runs.
        """
        producer = {o: k for k, op in enumerate(self.ops) for o in op[2]}
        needed: set[int] = set()
        stack = list(want)
        while stack:
            k = producer.get(stack.pop())
            if k is None or k in needed or self.ops[k][0] == "DEQUANTIZE":
                continue
            needed.add(k)
            stack.extend(i for i in self.ops[k][1] if i >= 0 and i not in self.consts)
        order = sorted(needed)
        acts = lambda ins: [i for i in ins if i >= 0 and i not in self._weights and i not in self.consts]  # noqa: E731
        uses: dict[int, int] = {}
        for k in order:
            for i in acts(self.ops[k][1]):
                uses[i] = uses.get(i, 0) + 1

        # A zero PAD read only by convs is the same as those convs padding their input by that much.
        folded: dict[int, tuple[int, tuple[int, int, int, int]]] = {}
        for k in order:
            name, ins, outs, _ = self.ops[k]
            if name != "PAD" or outs[0] in want:
                continue
            p = self.consts[ins[1]]
            readers = [j for j in order if outs[0] in self.ops[j][1]]
            if (p[0] == 0).all() and (p[3] == 0).all() and all(
                    self.ops[j][0] in ("CONV_2D", "DEPTHWISE_CONV_2D") and self.ops[j][1][0] == outs[0]
                    for j in readers):
                folded[outs[0]] = (ins[0], (int(p[1, 0]), int(p[1, 1]), int(p[2, 0]), int(p[2, 1])))

        fresh_ops = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RESIZE_BILINEAR", "PAD", "MAX_POOL_2D", "LOGISTIC")
        steps: list[_Step] = []
        for k in order:
            name, ins, outs, table = self.ops[k]
            if outs[0] in folded:
                continue
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                o = self._opts("Conv2DOptions" if name == "CONV_2D" else "DepthwiseConv2DOptions", table)
                src, extra = folded.get(ins[0], (ins[0], (0, 0, 0, 0)))
                w = self._weights[ins[1]].to(device)
                if channels_last:  # laid out once, not converted by oneDNN on every call
                    w = w.contiguous(memory_format=torch.channels_last)
                b = self._weights[ins[2]].to(device) if len(ins) > 2 and ins[2] >= 0 else None
                steps.append(_Step("conv", [src], outs[0], weight=w, bias=b, stride=(o.StrideH(), o.StrideW()),
                                   dilation=(o.DilationHFactor() or 1, o.DilationWFactor() or 1),
                                   groups=1 if name == "CONV_2D" else int(w.shape[0]), same=o.Padding() == 0,
                                   extra_pad=extra, act=o.FusedActivationFunction()))
            elif name == "ADD" and ins[1] not in self._weights:
                o = self._opts("AddOptions", table)
                # adding into an operand that dies here saves a map-sized allocation; a + b == b + a exactly
                into = -1
                for j, t in enumerate(ins[:2]):
                    p_op = producer.get(t)
                    if (into < 0 and t not in want and uses.get(t) == 1 and p_op is not None
                            and self.ops[p_op][0] in fresh_ops
                            and self.tensor_shapes[t] == self.tensor_shapes[outs[0]]):
                        into = j
                steps.append(_Step("add", list(ins[:2]), outs[0], act=o.FusedActivationFunction(), into=into))
            else:
                steps.append(_Step("op", list(ins), outs[0], op=(name, ins, outs, table)))
        last: dict[int, int] = {}
        for n, st in enumerate(steps):
            for i in acts(st.ins):
                last[i] = n
        for i, n in last.items():
            if i not in want:
                steps[n].drop.append(i)
        return steps

    def forward(self, x: torch.Tensor, keep: list[str] | None = None) -> dict[str, torch.Tensor]:
        if not self.fast:
            return self.reference(x, keep)
        want = self._want(keep)
        cl = self.channels_last and x.device.type == "cpu" and x.ndim == 4  # other devices (untested): NCHW
        plan = self._plan(want, x.device, cl)
        x = x.float()
        vals: dict[int, torch.Tensor] = {self.input_id: x.contiguous(memory_format=torch.channels_last) if cl else x}
        for st in plan:
            if st.kind == "conv":
                y = _conv_step(vals[st.ins[0]], st)
            elif st.kind == "add":
                a, b = vals[st.ins[0]], vals[st.ins[1]]
                y = a.add_(b) if st.into == 0 else b.add_(a) if st.into == 1 else a + b
                y = _act_(y, st.act)
            else:
                y = self._run_op(*st.op, vals)
            vals[st.out] = y
            for i in st.drop:
                del vals[i]
        # as in the replay, only what an op computes comes back (not the input, not a dequantised weight)
        return {self.tensor_names[i]: vals[i].contiguous() for i in want if i in vals and i != self.input_id}


@dataclass
class _Step:
    """One op of a plan: ``kind`` "conv" / "add" (fast paths) or "op" (the reference handler)."""

    kind: str
    ins: list[int]
    out: int
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    same: bool = False
    extra_pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, bottom, left, right: a folded PAD op
    act: int = 0
    into: int = -1  # add: the operand overwritten with the sum (-1: a new tensor)
    op: Any = None
    drop: list[int] = field(default_factory=list)  # values not read after this step


def _act_(x: torch.Tensor, code: int) -> torch.Tensor:
    """:func:`_act` in place (on a tensor this op just made)."""
    if code == 0:
        return x
    if code == 1:
        return x.relu_()
    if code == 3:
        return x.clamp_(0.0, 6.0)
    raise NeuralfitError(f"GHUM port: fused activation {code} is not supported")


def _conv_step(a: torch.Tensor, st: _Step) -> torch.Tensor:
    w = st.weight
    assert w is not None
    (sh, sw), (dh, dw) = st.stride, st.dilation
    pt, pb, pl, pr = st.extra_pad
    if st.same:  # SAME on the (already explicitly padded) size, as TF-Lite computes it
        (st_, sb), (sl, sr) = (_same_pad(a.shape[-2] + pt + pb, w.shape[-2], sh, dh),
                               _same_pad(a.shape[-1] + pl + pr, w.shape[-1], sw, dw))
        pt, pb, pl, pr = pt + st_, pb + sb, pl + sl, pr + sr
    if pt == pb and pl == pr:  # zero padding inside the conv: no padded copy of the map
        y = F.conv2d(a, w, st.bias, stride=st.stride, padding=(pt, pl), dilation=st.dilation, groups=st.groups)
    else:
        y = F.conv2d(F.pad(a, (pl, pr, pt, pb)), w, st.bias, stride=st.stride, dilation=st.dilation, groups=st.groups)
    return _act_(y, st.act)
