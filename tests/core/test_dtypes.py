"""Bytes a tensor takes as ONNX stores it: sub-byte types packed, the last byte rounded up."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from archcalc.core.dtypes import stored_bytes


@pytest.mark.parametrize("dtype, elements, expected", [
    ("float32", 10, 40), ("float16", 10, 20), ("int8", 10, 10), ("int32", 3, 12),
    ("int4", 6_400, 3_200), ("uint4", 7, 4), ("int2", 5, 2), ("float4e2m1", 3, 2), ("uint4", 0, 0)])
def test_stored_bytes(dtype, elements, expected):
    assert stored_bytes(dtype, elements) == expected


@pytest.mark.parametrize("data_type, name", [(TensorProto.INT4, "int4"), (TensorProto.UINT4, "uint4")])
def test_int4_bytes_are_onnxs_raw_data(data_type, name):
    """onnx packs 7 int4 values into 4 bytes of raw_data."""
    values = np.arange(7).astype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    tensor = numpy_helper.from_array(values, "w")
    assert tensor.data_type == data_type
    assert len(tensor.raw_data) == stored_bytes(name, 7) == 4
