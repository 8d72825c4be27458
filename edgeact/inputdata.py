"""Input data for verify, check and bench: read a .npz/.npy and refuse what would give a false answer.

Every command that takes `--data` goes through `load_inputs`, so a corrupt file, a wrong shape or layout,
several arrays for one input, object or string arrays, NaN/Inf or zero rows are refused here, where the
data enters, with the cause and the fix — never passed on to a runtime that would compare nothing (and
call it exact) or turn NaN into a garbage code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgeact.errors import ModelFileError, QuantizationError

SAVE_HINT = "save inputs with numpy.savez(path, x=array) (one array per model input, batch first)"
MAX_SAMPLES = 100_000
MAX_BYTES = 2 << 30  # refuse to draw more than 2 GiB of random inputs


def read_arrays(path) -> dict[str, np.ndarray]:
    """The arrays of a .npz (in file order) or a .npy (as 'x'); ModelFileError for anything unreadable."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"data file {str(p)!r} not found — {SAVE_HINT}")
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": loaded}
        with loaded as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # BadZipFile, EOFError, zlib/struct errors, object arrays: numpy raises many kinds
        raise ModelFileError(_unreadable(p, exc)) from None


def _unreadable(p: Path, exc: BaseException) -> str:
    why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if "allow_pickle" in why or "Object arrays" in why:
        why = "it holds Python objects (an object array), not numbers"
    elif isinstance(exc, EOFError) or "truncated" in why.lower():
        why = f"it is empty or truncated ({why})"
    return f"{str(p)!r} is not a readable .npz/.npy: {why} — {SAVE_HINT}"


def check_array(name: str, a: np.ndarray, expected_shape: Sequence[int] | None = None,
                dtype: str | np.dtype = "float32", where: str = "", quant: tuple | None = None) -> np.ndarray:
    """One input array, checked and cast to `dtype`: numeric, at least one row, finite, the expected
    shape after the batch dimension (and for an integer input, values inside that type's range). Float
    data for an integer input with `quant` (scale, zero point) stays float: the runner quantizes it."""
    src = f"{where}: " if where else ""
    a = np.asarray(a)
    want = np.dtype(dtype)
    if a.dtype.kind not in "biuf":
        raise QuantizationError(f"{src}input {name!r} has dtype {a.dtype} ({_kind(a.dtype)}); the model takes "
                                f"{want.name} numbers — {SAVE_HINT}")
    if a.ndim == 0:
        raise QuantizationError(f"{src}input {name!r} is a single number; give a batch: an array of shape "
                                f"(N, …) — {SAVE_HINT}")
    if a.shape[0] == 0:
        raise QuantizationError(f"{src}input {name!r} has 0 rows (shape {a.shape}): nothing would be compared; "
                                "give at least one sample")
    if expected_shape is not None:
        _check_shape(name, a.shape, tuple(int(d) for d in expected_shape), src)
    if want.kind == "f" or (quant and a.dtype.kind == "f"):
        if want.kind == "f" and a.dtype.kind != "f":
            raise QuantizationError(f"{src}input {name!r} holds {a.dtype} integers but the model takes {want.name} "
                                    "values; if they are real values save them as float32 (x.astype('float32')), "
                                    "if they are int8 codes export the model with --io int8")
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise QuantizationError(f"{src}input {name!r} holds {bad} NaN/Inf value(s) (of {a.size}); no int8 code "
                                    "stands for them — remove or replace them (numpy.nan_to_num)")
        as_float = want if want.kind == "f" else np.dtype(np.float32)
        big = float(np.max(np.abs(a)))
        if big > np.finfo(as_float).max:
            raise QuantizationError(f"{src}input {name!r} holds {big:.3g}, beyond {as_float.name}; rescale the data")
        return a.astype(as_float, copy=False)
    if a.dtype.kind == "f":
        raise QuantizationError(f"{src}input {name!r} holds floats but the model takes {want.name} codes; "
                                f"quantize them first or export the model with float inputs (--io float)")
    info = np.iinfo(want)
    lo, hi = int(a.min()), int(a.max())
    if lo < info.min or hi > info.max:
        raise QuantizationError(f"{src}input {name!r} holds values in [{lo}, {hi}], outside {want.name} "
                                f"[{info.min}, {info.max}]; give {want.name} codes")
    return a.astype(want, copy=False)


def _kind(dt: np.dtype) -> str:
    return {"O": "Python objects", "U": "text", "S": "bytes", "c": "complex numbers", "V": "records",
            "M": "dates", "m": "time spans"}.get(dt.kind, dt.kind)


def _check_shape(name: str, got: tuple, want: tuple, src: str) -> None:
    if len(got) == len(want) and all(w <= 0 or g == w for g, w in zip(got[1:], want[1:])):
        return
    hint = ""
    if len(got) == 4 == len(want):
        if got[1:] == (want[2], want[3], want[1]):
            hint = " — it looks channels-last (NHWC); this input is NCHW: x.transpose(0, 3, 1, 2)"
        elif got[1:] == (want[3], want[1], want[2]):
            hint = " — it looks channels-first (NCHW); this input is NHWC: x.transpose(0, 2, 3, 1)"
    if not hint and len(got) == len(want) - 1 and got == want[1:]:
        hint = " — the batch dimension is missing: x[None]"
    if not hint:
        hint = f" — give an array of shape (N, {', '.join(str(d) for d in want[1:])})"
    raise QuantizationError(f"{src}input {name!r} has shape {got}, the model takes (N, "
                            f"{', '.join(str(d) for d in want[1:])}){hint}")


def match_inputs(arrays: Mapping[str, np.ndarray], specs: Sequence[Mapping] | None, where: str = ""
                 ) -> dict[str, np.ndarray]:
    """Pair the arrays with the model's inputs (`specs`: name, shape, dtype per input; None = unknown)
    and check each; the same number of rows in every array."""
    src = f"{where}: " if where else ""
    if not arrays:
        raise QuantizationError(f"{src}the data holds no arrays — {SAVE_HINT}")
    if specs is not None and len(arrays) != len(specs):
        raise QuantizationError(f"{src}the data holds {len(arrays)} array(s) ({', '.join(arrays)}) but the model "
                                f"takes {len(specs)} input(s) ({', '.join(str(s['name']) for s in specs)}); "
                                "give one array per input, in order")
    out = {}
    for i, (k, a) in enumerate(arrays.items()):
        spec = specs[i] if specs is not None else {}
        out[k] = check_array(k, a, spec.get("shape"), spec.get("dtype", "float32") if specs is not None
                             else (np.asarray(a).dtype if np.asarray(a).dtype.kind in "iu" else "float32"), where,
                             spec.get("quant"))
    rows = {k: v.shape[0] for k, v in out.items()}
    if len(set(rows.values())) > 1:
        raise QuantizationError(f"{src}the arrays have different numbers of rows ({rows}); give the same batch "
                                "to every input")
    return out


def load_inputs(path, specs: Sequence[Mapping] | None = None, where: str = "") -> dict[str, np.ndarray]:
    """`read_arrays` + `match_inputs`: the checked inputs of a data file, by array name."""
    return match_inputs(read_arrays(path), specs, where or str(path))


def check_samples(samples: int, example_shape: Sequence[int]) -> int:
    """How many random inputs to draw: at least 1, at most MAX_SAMPLES and 2 GiB of float32."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)):
        raise QuantizationError(f"--samples must be a whole number, not {samples!r}")
    per = int(np.prod([int(d) for d in example_shape[1:]], dtype=np.int64)) * 4
    limit = max(1, min(MAX_SAMPLES, MAX_BYTES // max(per, 1)))
    if not 1 <= samples <= limit:
        raise QuantizationError(f"--samples {samples} is out of range: give 1 to {limit:,} (each sample is "
                                f"{per:,} bytes)")
    return int(samples)


def is_path(data) -> bool:
    return isinstance(data, (str, os.PathLike))
