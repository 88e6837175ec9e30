"""Exact division of symbolic dims (archcalc.core.dims)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

from archcalc.core.dims import Sym, bind
from archcalc.core.errors import ShapeError

BATCH, SAMPLES = Sym.symbol("batch"), Sym.symbol("samples")


def test_a_sum_divides_its_monomial_multiples():
    """wav2vec2's frames after three strided convs, L = floor((floor((samples - 10)/5) - 2)/2):
    a Reshape to [batch * (L + 1), -1, 16] divides 64 * batch * (L + 1) by 16 * batch * (L + 1).
    The quotient is 4, and 4 * samples for a numerator with samples as a factor too."""
    frames = ((SAMPLES - 10) // 5 - 2) // 2 + 1
    rows = 16 * BATCH * frames
    assert (64 * BATCH * frames) // rows == 4
    assert (4 * SAMPLES * rows) // rows == 4 * SAMPLES
    assert bind((64 * BATCH * frames) // (BATCH * frames), {"batch": 2, "samples": 640}) == 64


def test_a_sum_that_does_not_divide_is_refused():
    with pytest.raises(ShapeError, match="cannot divide"):
        (BATCH * SAMPLES + 1) // (BATCH + 1)
    with pytest.raises(ShapeError, match="cannot divide"):
        (2 * BATCH + 3) // (BATCH + 1)  # 2 * (batch + 1) + 1: a multiple of no monomial


def test_one_floor_form_for_a_conv_stack():
    """wav2vec2's three strided convs (kernels 10, 3, 3; strides 5, 2, 2) as the TorchScript
    exporter writes them, floor((floor((floor((s - 10)/5) - 2)/2) - 2)/2) + 1, and as the
    dynamo exporter does, floor(s/20) - 1, are one dim: floor((s - 10)/5) = floor(s/5) - 2,
    floor((floor(s/5) - 4)/2) = floor(s/10) - 2, floor((floor(s/10) - 4)/2) = floor(s/20) - 2."""
    conv_stack = ((SAMPLES - 10) // 5 - 2) // 2
    conv_stack = (conv_stack - 2) // 2 + 1
    assert conv_stack == SAMPLES // 20 - 1
    assert str(conv_stack) == "floor((samples)/20) - 1"
    for samples in (400, 639, 640, 641, 659, 660, 10_000):  # floor arithmetic, checked by ints
        assert bind(conv_stack, {"samples": samples}) == (((samples - 10) // 5 - 2) // 2 - 2) // 2 + 1
    assert bind((3 * SAMPLES + 7) // 4, {"samples": 5}) == 22 // 4  # no multiple of 4 to pull out


def test_sym_hash_is_made_once_and_equal_syms_hash_alike():
    # The hash is kept with the object (the engine hashes shapes per layer): two equal
    # polynomials built by different arithmetic must still hash and compare equal.
    batch, seq = Sym.symbol("batch"), Sym.symbol("seq")
    one, other = batch * seq + 2 * batch, (seq + 2) * batch
    assert one == other and hash(one) == hash(other)
    assert {one: "found"}[other] == "found"
    assert one != batch * seq + 3 * batch


def test_sym_unpickled_from_another_process_hashes_with_this_ones_seed():
    # A string's hash depends on the process's seed: a hash kept from the process that
    # pickled the dim would miss it as a dict key here.
    made = subprocess.run(
        [sys.executable, "-c", "import pickle, sys; from archcalc.core.dims import Sym; "
         "sys.stdout.buffer.write(pickle.dumps(Sym.symbol('batch') * 3 + Sym.symbol('seq')))"],
        capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    loaded = pickle.loads(made.stdout)
    here = Sym.symbol("batch") * 3 + Sym.symbol("seq")
    assert loaded == here and hash(loaded) == hash(here)
    assert {here: 1}.get(loaded) == 1
