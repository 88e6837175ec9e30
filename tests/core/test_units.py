"""Counts and sizes as people read them; the parser's cases live with the budgets that use it
(tests/compare/test_budget.py)."""

from __future__ import annotations

import pytest

from archcalc.core.units import (
    BYTES,
    COUNT,
    compact_number,
    human,
    human_bytes,
    human_count,
    scientific,
    scientific_at_least,
)


@pytest.mark.parametrize("value, text", [(25_557_032, "25.56 M"), (4_089_184_256, "4.09 G"), (999, "999"),
                                         (1000, "1.00 K"), (-2_500_000, "-2.50 M"),
                                         # 999,999 / 1000 rounds to 1000.00 K: three digits at most, so M
                                         (999_999, "1.00 M"),
                                         # a sweep's 100k-token point: P, not "1000.00 T"
                                         (14_520_000_000_000, "14.52 T"), (1_234 * 10**15, "1234.00 P")])
def test_human_count_in_powers_of_1000(value, text):
    assert human_count(value) == text == human(value, COUNT)


@pytest.mark.parametrize("value, text", [(102_760_448, "98.00 MiB"), (999, "999 B"), (1024, "1.00 KiB"),
                                         (3 * 2**30, "3.00 GiB"),
                                         # never four digits before the point: 1023 / 1024 = 0.999 KiB,
                                         # 1,036,339 B = 1012.05 KiB = 1,036,339 / 2**20 = 0.988 MiB
                                         (1023, "1.00 KiB"), (1_036_339, "0.99 MiB")])
def test_human_bytes_in_powers_of_1024(value, text):
    assert human_bytes(value) == text == human(value, BYTES)


@pytest.mark.parametrize("value, text", [(10**12, "1e12"), (2_500_000_000_000_000, "2.5e15"), (123, "123"),
                                         (123_456, "1.23e5")])
def test_scientific_is_what_count_options_take(value, text):
    assert scientific(value) == text


@pytest.mark.parametrize("value, text", [(1_000_000_000_000_000, "1e15"), (1_000_000_000_000_001, "1.1e15"),
                                         (2_340_000, "2.4e6"), (42, "42")])
def test_scientific_at_least_is_a_limit_the_value_is_within(value, text):
    assert scientific_at_least(value) == text
    assert float(text) >= value


def test_compact_number_is_exact_to_four_decimals():
    from fractions import Fraction

    assert [compact_number(v) for v in (Fraction(3), Fraction(1, 16), Fraction(8, 3))] == ["3", "0.0625", "2.67"]
