"""The one table of element types: ONNX's numbers, archcalc's (numpy-style) names, sizes.

Everything archcalc says about a dtype comes from here: readers name a TensorProto's
type, rules name Cast's target, reports size tensors, runtime maps names back to ONNX
and numpy. No onnx or numpy import, so the core stays light.
"""

from __future__ import annotations

from archcalc.core.errors import ShapeError

# TensorProto.DataType -> numpy-style name.
ONNX_DTYPES: dict[int, str] = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
    19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1",
    24: "float8e8m0", 25: "uint2", 26: "int2", 27: "float6e2m3", 28: "float6e3m2",
}
# Name -> TensorProto.DataType; spellings specs accept besides ONNX's ("float", "double").
ONNX_NUMBERS: dict[str, int] = {name: number for number, name in ONNX_DTYPES.items()}
ALIASES: dict[str, str] = {"float": "float32", "double": "float64"}

# Bytes per element. Sub-byte types (int4, ...) are not listed, and count a byte here
# only where they are unknown to this table; "string" counts a pointer.
DTYPE_BYTES: dict[str, int] = {
    "float64": 8, "double": 8, "float32": 4, "float": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "uint64": 8, "int32": 4, "uint32": 4, "int16": 2, "uint16": 2,
    "int8": 1, "uint8": 1, "bool": 1, "float8e4m3fn": 1, "float8e5m2": 1,
    "complex64": 8, "complex128": 16, "string": 8,
}


# Bits per element of the sub-byte types, which ONNX stores packed (two int4 to a byte).
SUB_BYTE_BITS: dict[str, int] = {"int4": 4, "uint4": 4, "float4e2m1": 4, "int2": 2, "uint2": 2}
SUB_BYTE_INTEGERS = ("int4", "uint4", "int2", "uint2")


def dtype_bytes(dtype: str) -> int:
    return DTYPE_BYTES.get(dtype, 4)


def stored_bytes(dtype: str, elements: int) -> int:
    """Bytes `elements` values of `dtype` take in an ONNX file: sub-byte types packed, the
    last byte rounded up (an int4 weight of 6,400 values is 3,200 bytes)."""
    bits = SUB_BYTE_BITS.get(dtype)
    return elements * dtype_bytes(dtype) if bits is None else -(-elements * bits // 8)


def canonical(dtype: str) -> str:
    """ONNX's name for a dtype a spec may spell otherwise ("float" -> "float32")."""
    return ALIASES.get(dtype, dtype)


def dtype_name(dtype: int | str) -> str:
    """A TensorProto.DataType number (or an already readable name) as a numpy-style name."""
    if isinstance(dtype, str):
        return dtype
    if dtype not in ONNX_DTYPES:
        raise ShapeError(f"unknown ONNX data type {dtype}")
    return ONNX_DTYPES[dtype]


def is_integral(dtype: str | None) -> bool:
    return dtype is not None and (dtype.startswith(("int", "uint")) or dtype == "bool")
