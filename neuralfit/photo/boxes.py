"""Person boxes given per photo in a JSON file (``neuralfit fit --boxes FILE``, docs/fit.md).

The file maps an image name to the list of its people's boxes, in photo pixels::

    {"img1.jpg": [[10, 20, 200, 400], {"bbox": [220, 15, 380, 390], "score": 0.9}],
     "img2.jpg": []}

A box is ``[x0, y0, x1, y1]`` or an object with a ``"bbox"`` key holding one (other keys, e.g. a
detector's ``"score"`` or a tracker's ``"id"``, are ignored), so the output of most detectors can be
used as is. An empty list says "this photo has no person" (the photo comes back ``no_person``); a photo
the file does not name gets the normal mediapipe search.

Everything is checked while loading, before any model is loaded or anything written: each problem is
one :class:`~neuralfit.errors.NeuralfitError` line naming the file, the image and the box (counted
from 1), e.g. ``boxes file b.json: "img1.jpg" box 2: x1 <= x0 (inverted box [50, 0, 10, 40])``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuralfit.errors import NeuralfitError


def load_boxes_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and check a boxes file.

    Returns:
        image name (the file's key, as written) -> (n, 4) float32 ``x0, y0, x1, y1`` per person, in
        the file's order; n = 0 for an empty list (kept: it means "no person in this photo").

    Raises:
        NeuralfitError: one line naming the file and the entry: missing/unreadable file, not JSON,
        top level not an object, duplicate image name, an entry that is not a list, a box that is not
        4 finite numbers, or a box with x1 <= x0 or y1 <= y0.
    """
    where = f"boxes file {path}"
    p = Path(path)
    if not p.is_file():
        raise NeuralfitError(f"{where}: {'is not a file' if p.exists() else 'no such file'}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NeuralfitError(f"{where}: cannot be read ({_one_line(exc)})") from None
    try:
        # Duplicate keys are refused: json would silently keep the last one and drop boxes.
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise NeuralfitError(f"{where}: {_quote(exc.key)} appears twice; give each image once") from None
    except ValueError as exc:  # json.JSONDecodeError, also int-conversion limits on huge numbers
        raise NeuralfitError(f"{where}: not JSON ({_one_line(exc)})") from None
    if not isinstance(data, dict):
        raise NeuralfitError(f"{where}: expected a JSON object mapping image names to lists of boxes, "
                             f"got {_kind(data)}")
    return {name: _parse_entry(entry, f"{where}: {_quote(name)}") for name, entry in data.items()}


def boxes_for_images(table: dict[str, np.ndarray], images: Sequence[str | os.PathLike], *,
                     path: str | os.PathLike | None = None) -> tuple[list[np.ndarray | None], list[str]]:
    """The boxes of each photo, matched by name.

    A key matches an image when it equals the path as given, its file name (``Path(p).name``) or its
    stem (name without extension). Keys naming several different input files (``a/x.jpg`` and
    ``b/x.jpg`` for ``"x.jpg"``) and images matched by two keys (``"x.jpg"`` and ``"x"``) are errors,
    not guesses: the wrong person's boxes would fit silently.

    Args:
        table: from :func:`load_boxes_file`.
        images: the photos' paths, in fitting order.
        path: the boxes file, only to name it in messages.

    Returns:
        per image its (n, 4) float32 boxes or None (no entry: the normal person search runs), and one
        warning line per key that matches no image (its boxes are ignored).
    """
    where = f"boxes file {path}" if path is not None else "boxes file"
    used: dict[str, set[str]] = {}  # key -> the distinct input paths it matched
    chosen: list[str | None] = []
    for img in images:
        given, p = str(img), Path(img)
        keys = list(dict.fromkeys(k for k in (given, p.name, p.stem) if k in table))
        if len(keys) > 1:
            raise NeuralfitError(f"{where}: {' and '.join(map(_quote, keys))} both match image {given}; "
                                 "keep one of them")
        chosen.append(keys[0] if keys else None)
        if keys:
            used.setdefault(keys[0], set()).add(given)
    for key, paths in used.items():
        if len(paths) > 1:
            shown = ", ".join(sorted(paths)[:3]) + (", ..." if len(paths) > 3 else "")
            raise NeuralfitError(f"{where}: {_quote(key)} matches {len(paths)} different images ({shown}); "
                                 "use the paths as given on the command line as keys")
    warnings = [f"{where}: no image named {_quote(key)} among the inputs; its boxes are ignored"
                for key in table if key not in used]
    return [None if k is None else table[k] for k in chosen], warnings


# ---------------------------------------------------------------------------------------------- helpers


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _parse_entry(entry: Any, where: str) -> np.ndarray:
    """One image's list of boxes -> (n, 4) float32."""
    if not isinstance(entry, list):
        raise NeuralfitError(f"{where}: expected a list of boxes [[x0, y0, x1, y1], ...], got {_kind(entry)}")
    boxes = [_parse_box(box, f"{where} box {i}") for i, box in enumerate(entry, start=1)]
    return np.asarray(boxes, dtype=np.float32).reshape(len(boxes), 4)


def _parse_box(box: Any, where: str) -> list[float]:
    """``[x0, y0, x1, y1]`` or ``{"bbox": [...], ...}`` -> 4 floats with x1 > x0, y1 > y0."""
    if isinstance(box, dict):
        if "bbox" not in box:
            raise NeuralfitError(f"{where}: an object without a \"bbox\" key ({_show(box)}); "
                                 "expected {\"bbox\": [x0, y0, x1, y1]}")
        box = box["bbox"]
    if not isinstance(box, list) or len(box) != 4:
        raise NeuralfitError(f"{where}: expected [x0, y0, x1, y1], got {_show(box)}")
    for v in box:
        if not _finite_number(v):
            raise NeuralfitError(f"{where}: {_show(v)} is not a finite number in {_show(box)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    for lo, hi, a, b in ((x0, x1, "x0", "x1"), (y0, y1, "y0", "y1")):
        if hi <= lo:
            what = "inverted box" if hi < lo else "zero-area box"
            raise NeuralfitError(f"{where}: {b} <= {a} ({what} {_show(box)})")
    return [x0, y0, x1, y1]


def _finite_number(v: Any) -> bool:
    # bool is an int in Python, and json reads NaN / Infinity: all three would pass a float().
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        # float32 is what the fit uses: 1e39 is finite as a float and inf as a float32.
        return math.isfinite(float(v)) and abs(float(v)) <= float(np.finfo(np.float32).max)
    except OverflowError:  # an int too big for a float
        return False


def _quote(name: str) -> str:
    # JSON quoting keeps a name with a newline or quote on one line and unambiguous.
    return json.dumps(name, ensure_ascii=False)


def _show(value: Any, limit: int = 60) -> str:
    """A JSON value as one short line (json.dumps has no newlines; long values are cut)."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return f"{names.get(type(value), type(value).__name__)} ({_show(value)})"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
