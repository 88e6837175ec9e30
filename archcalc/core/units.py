"""Counts and byte sizes: how archcalc reads them (budgets, --fit, --max-memory) and writes
them (tables, budgets, diffs). One vocabulary for every command.

Counts use K, M, G, T (powers of 1000), as parameter and MAC counts are quoted; bytes use
KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024); times (estimated
latency) ns, us, ms, s, always with the unit, and are held in nanoseconds. Parsed quantities
are exact integers, so ``actual <= limit`` never suffers from float rounding.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Any

from archcalc.core.errors import ArchcalcError

COUNT = "count"
BYTES = "bytes"
TIME = "time"  # in nanoseconds

# Canonical spelling -> scale. Lookup is case-insensitive ("30m", "200mib" are accepted).
COUNT_UNITS: dict[str, int] = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
BYTE_UNITS: dict[str, int] = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}
TIME_UNITS: dict[str, int] = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}
UNITS = {COUNT: COUNT_UNITS, BYTES: BYTE_UNITS, TIME: TIME_UNITS}
_UNIT_BY_UPPER = {kind: {name.upper(): name for name in units} for kind, units in UNITS.items()}

_QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?\s*([A-Za-z]*)$")


class QuantityError(ArchcalcError):
    """A count or size that cannot be read."""


def _in_units(value: int, units: tuple[tuple[str, int], ...], step: int) -> str | None:
    """`value` in the smallest of `units` (ascending) that leaves at most three digits before
    the point, so 1012.05 KiB reads 0.99 MiB and 999,999 reads 1.00 M; None under the first."""
    if abs(value) < units[0][1] * 1000 // step:
        return None
    for unit, scale in units:
        if round(abs(value) / scale, 2) < 1000 or unit == units[-1][0]:
            return f"{value / scale:.2f} {unit}"
    raise AssertionError("unreachable")


def human_count(value: int) -> str:
    """25557032 -> '25.56 M' (powers of 1000, as parameter and MAC counts are quoted)."""
    return _in_units(value, (("K", 10**3), ("M", 10**6), ("G", 10**9), ("T", 10**12), ("P", 10**15)), 1000) \
        or str(value)


def human_bytes(value: int) -> str:
    """102760448 -> '98.00 MiB' (powers of 1024, as memory is quoted); 1000 B -> '0.98 KiB'."""
    return _in_units(value, (("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30), ("TiB", 2**40)), 1024) or f"{value} B"


def compact_number(value: int | Fraction) -> str:
    """3 -> '3', 1/16 -> '0.0625', 8/3 -> '2.67': exact up to 4 decimals, else rounded to 2."""
    if value.denominator == 1:
        return str(int(value))
    if 10**4 % value.denominator == 0:
        return f"{float(value):.4f}".rstrip("0")
    return f"{float(value):.2f}"


def scientific(count: int) -> str:
    """1000000000000 -> '1e12' (not '1e+12'): three significant digits, as options take counts."""
    mantissa, _, exponent = f"{count:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def scientific_at_least(count: int) -> str:
    """`count` in two significant digits, rounded up: a limit that `count` is within."""
    digits = len(str(count)) - 2
    if digits <= 0:
        return str(count)
    return f"{-(-count // 10**digits) / 10:g}e{digits + 1}"


def human_ns(value: int) -> str:
    """5000000 -> '5.00 ms' (a time in nanoseconds)."""
    for unit, scale in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value} ns"


def human(value: int, kind: str) -> str:
    if kind == TIME:
        return human_ns(value)
    return human_bytes(value) if kind == BYTES else human_count(value)


def unit_hint(kind: str) -> str:
    if kind == TIME:
        return "write a time like 5ms: ns, us, ms or s"
    return ("write a count like 30M: K, M, G, T are powers of 1000" if kind == COUNT else
            "write a size like 200MiB: KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024")


def parse_quantity(value: Any, kind: str = COUNT) -> int:
    """'2.5M' -> 2500000 (a count), '200MiB' -> 209715200 (bytes); a plain number is a count
    or a number of bytes. Fractions of one are dropped (``actual <= 2.5`` iff ``actual <= 2``
    for whole actuals). Raises :class:`QuantityError` without a location; the caller adds it."""
    if kind not in UNITS:
        raise ValueError(f"kind must be {COUNT!r}, {BYTES!r} or {TIME!r}, not {kind!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise QuantityError(f"{value!r} is not a quantity", fix=unit_hint(kind))
    if kind == TIME and isinstance(value, int | float):  # 5 what? A time is written with its unit
        raise QuantityError(f"'{value}': a time needs its unit", fix=unit_hint(kind))
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"{value!r} is not a quantity", fix=unit_hint(kind))
        number, unit = Decimal(repr(value)), ""
    else:
        match = _QUANTITY.match(value.strip().replace("_", ""))
        if not match:
            raise QuantityError(f"'{value}' is not a quantity", fix=unit_hint(kind))
        sign, digits, exponent, unit = match.groups()
        if abs(int(exponent or 0)) > 40:
            raise QuantityError(f"'{value}': the exponent is out of range", fix=unit_hint(kind))
        try:
            number = Decimal(f"{sign}{digits}e{exponent or 0}")
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            raise QuantityError(f"'{value}' is not a quantity", fix=unit_hint(kind)) from None
    canonical = _UNIT_BY_UPPER[kind].get(unit.upper(), "" if not unit else None)  # no unit: count or bytes
    if kind == TIME and not unit:
        raise QuantityError(f"'{value}': a time needs its unit", fix=unit_hint(kind))
    if canonical is None:
        other = BYTES if kind == COUNT else COUNT
        if kind != TIME and unit.upper() in _UNIT_BY_UPPER[other]:
            if kind == COUNT:
                reason = f"'{unit}' is a unit of bytes, but this limit is a count"
            else:
                reason = f"'{unit}' is a unit of counts, but this limit is in bytes"
        else:
            reason = f"unknown unit '{unit}'"
        raise QuantityError(f"'{value}': {reason}", fix=unit_hint(kind))
    with localcontext() as context:
        context.prec = len(number.as_tuple().digits) + 20  # exact: a scale has at most 13 digits
        return math.floor(number * UNITS[kind].get(canonical, 1))


def _exact_ratio_text(value: int, scale: int) -> str:
    """value / scale written exactly in decimal; scale is a power of 10 or of 2, so it ends."""
    shift = 0
    while (10**shift) % scale:
        shift += 1
    digits = str(value * (10**shift // scale)).rjust(shift + 1, "0")
    whole, fraction = (digits[:-shift], digits[-shift:].rstrip("0")) if shift else (digits, "")
    return f"{whole}.{fraction}" if fraction else whole


def format_quantity(value: int, kind: str = COUNT) -> str:
    """The shortest exact spelling in budget units: 30000000 -> '30M', 209715200 -> '200MiB',
    2359296 -> '2359296'. ``parse_quantity(format_quantity(n, kind), kind) == n``."""
    if value < 0:
        return "-" + format_quantity(-value, kind)
    units = UNITS[kind]
    candidates = [f"{_exact_ratio_text(value, scale)}{name}"
                  for name, scale in sorted(units.items(), key=lambda item: -item[1])
                  if scale <= max(value, 1)]
    # min() keeps the first of equal length: the largest unit, KiB before KB (sorted by scale).
    return min(candidates, key=len)
