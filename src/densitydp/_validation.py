"""Argument checks for the public boundary.

Each check returns the coerced value and raises with one message shape::

    `epsilon` must be a finite number > 0; got -1.

``TypeError`` for a wrong type, ``ValueError`` for a wrong value. Kernels never validate: by the
time an array reaches numba it has the dtype, layout and range the kernel expects.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any

import numpy as np

__all__ = [
    "check_choice",
    "check_epsilon",
    "check_finite_array",
    "check_int",
    "check_number",
    "check_open_unit",
    "check_points",
    "check_word_ids",
]


def _show(value: Any) -> str:
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        digits = str(abs(int(value)))
        if len(digits) > 20:  # 10**400: its size, not 400 digits cut off
            sign = "-" if value < 0 else ""
            size = f"{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"
            return f"{sign}{size} (an int of {len(digits)} digits)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_float(value: Any) -> float | None:
    """``float(value)``, or None where it overflows (an int or a Fraction beyond 1.8e308)."""
    try:
        return float(value)
    except (OverflowError, ValueError, ZeroDivisionError):
        return None


def check_number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    strict: bool = True,
    maximum: float | None = None,
) -> float:
    """Return ``value`` as a finite float within bounds (``minimum`` exclusive when ``strict``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number; got {type(value).__name__}.")
    converted = _as_float(value)
    number = math.inf if converted is None else converted
    bound = ""
    if minimum is not None:
        bound = f" {'>' if strict else '>='} {minimum:g}"
    if maximum is not None:
        bound += f"{' and' if bound else ''} <= {maximum:g}"
    ok = math.isfinite(number)
    if ok and minimum is not None:
        ok = number > minimum if strict else number >= minimum
    if ok and maximum is not None:
        ok = number <= maximum
    if not ok:
        raise ValueError(f"`{name}` must be a finite number{bound}; got {_show(value)}.")
    return number


def check_epsilon(epsilon: Any, name: str = "epsilon") -> float:
    """Return ``epsilon`` as a float; it must be finite and > 0."""
    return check_number(epsilon, name, minimum=0.0)


def check_open_unit(value: Any, name: str) -> float:
    """Return ``value`` as a float strictly inside (0, 1)."""
    number = check_number(value, name, minimum=0.0)
    if number >= 1.0:
        raise ValueError(
            f"`{name}` must be a number in the open interval (0, 1); got {_show(value)}."
        )
    return number


def check_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as a Python int within ``[minimum, maximum]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int; got {type(value).__name__}.")
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        if minimum is not None and maximum is not None:
            bound = f"in [{minimum}, {maximum}]"
        elif minimum is not None:
            bound = f">= {minimum}"
        else:
            bound = f"<= {maximum}"
        raise ValueError(f"`{name}` must be an int {bound}; got {number}.")
    return number


def check_choice(value: Any, name: str, choices: Collection[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {options}; got {_show(value)}.")
    return value


def check_real_dtype(values: Any, name: str) -> None:
    """Refuse what a float cast would coerce silently: complex (drops the imaginary part), bool,
    datetime, strings, objects, masked arrays (drops the mask)."""
    if np.ma.isMaskedArray(values):
        raise TypeError(f"`{name}` must be a plain array of real numbers; got a masked array.")
    try:
        dtype = np.asarray(values).dtype
    except (TypeError, ValueError):
        return  # ragged input: the cast reports it
    if dtype.kind not in "iuf":
        raise TypeError(f"`{name}` must hold real numbers (int or float); got dtype {dtype}.")


def check_finite_array(
    array: Any, name: str, *, ndim: int | None = None, dtype: Any = np.float64
) -> np.ndarray:
    """Return ``array`` as a numeric ndarray of ``dtype``; every value must be finite.

    The input is never modified: a new array is made whenever a conversion is needed.
    """
    check_real_dtype(array, name)
    try:
        result = np.asarray(array, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be an array of real numbers; got {exc}.") from None
    if ndim is not None and result.ndim != ndim:
        raise ValueError(
            f"`{name}` must be a {ndim}-D array; got shape {result.shape} ({result.ndim}-D)."
        )
    finite = np.isfinite(result)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(f"`{name}` must be finite; got {result[where]} at index {where}.")
    return result


def check_points(points: Any, dim: int, name: str = "points") -> np.ndarray:
    """Return ``points`` as a finite float64 C-contiguous ``(n, dim)`` array (1-D -> one row)."""
    result = check_finite_array(points, name)
    if result.ndim == 1:
        result = result[None, :]
    if result.ndim != 2 or result.shape[1] != dim:
        raise ValueError(f"`{name}` must have shape (n, {dim}); got shape {np.shape(points)}.")
    return np.ascontiguousarray(result)


def check_word_ids(word_ids: Any, n_words: int, name: str = "word_ids") -> np.ndarray:
    """Return ``word_ids`` as an int64 array of the same shape, every id in ``[0, n_words)``.

    Accepts an int or any integer array-like; floats (even integral ones) and bools are refused,
    so that a vector of distances is never mistaken for ids.
    """
    array = np.asarray(word_ids)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.integer) or (array.size == 0 and array.dtype == np.float64)
    ):
        raise TypeError(f"`{name}` must be an int or an array of ints; got dtype {array.dtype}.")
    if array.size and np.issubdtype(array.dtype, np.unsignedinteger) and array.max() >= n_words:
        raise ValueError(
            f"`{name}` must be in [0, {n_words - 1}] (the vocabulary has {n_words} words); "
            f"got {int(array.max())}."
        )
    array = array.astype(np.int64, copy=False)
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= n_words:
            bad = low if low < 0 else high
            raise ValueError(
                f"`{name}` must be in [0, {n_words - 1}] (the vocabulary has {n_words} words); "
                f"got {bad}."
            )
    return array
