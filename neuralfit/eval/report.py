"""Summaries and tables of evaluation runs (:class:`neuralfit.eval.protocols.EvalRun`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: (record key, column title, format) of the printed table.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("mpjpe", "MPJPE", "{:.1f}"),
    ("pa_mpjpe", "PA-MPJPE", "{:.1f}"),
    ("pckh", "PCKh", "{:.1f}"),
    ("pa_mpjpe_vis", "PA-MPJPE vis", "{:.1f}"),
    ("mpjpe_occ", "MPJPE occ", "{:.1f}"),
    ("pve", "PVE", "{:.1f}"),
    ("seconds", "s/person", "{:.3f}"),
)


def summarize(records: Sequence[dict[str, Any]], methods: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean of every metric per method (NaN-aware: visible/occluded-joint variants skip empty samples).

    Returns {method: {metric: mean, ..., "n": samples}}; MPJPE-like in mm, PCKh in %.
    """
    out: dict[str, dict[str, float]] = {}
    for m in methods:
        rows = [r["methods"][m] for r in records if m in r.get("methods", {})]
        keys = sorted({k for r in rows for k in r})
        stats: dict[str, float] = {"n": float(len(rows))}
        for k in keys:
            v = np.array([r.get(k, math.nan) for r in rows], dtype=np.float64)
            stats[k] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
        out[m] = stats
    return out


def format_table(summary: dict[str, dict[str, float]], columns=COLUMNS, markdown: bool = True) -> str:
    """A table of :func:`summarize` output, one row per method (markdown, or aligned plain text)."""
    head = ["method"] + [c[1] for c in columns] + ["n"]
    rows = []
    for m, s in summary.items():
        cells = [m] + [("-" if not math.isfinite(s.get(k, math.nan)) else fmt.format(s[k])) for k, _, fmt in columns]
        rows.append(cells + [str(int(s.get("n", 0)))])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]

    def fmt_row(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([fmt_row(head)] + [fmt_row(r) for r in rows])


def report_dict(run, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON written by ``neuralfit eval``: settings, summary, per-sample records (NaN -> null)."""
    return _finite({"settings": run.config, "summary": summarize(run.records, run.methods), **(extra or {}),
                    "records": run.records})


def _finite(x: Any) -> Any:
    """Replace NaN/inf floats by None so the file is strict JSON (e.g. visible-joint means with no joints)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x
