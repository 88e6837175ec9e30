"""Every layer type a spec may use, by name and by alias."""

from __future__ import annotations

from archcalc.readers.spec.layers import REQUIRED, LayerType, layer_types
from archcalc.readers.spec.transformer import transformer_layer_types

LAYER_TYPES: dict[str, LayerType] = {}
for _type in layer_types() + transformer_layer_types():
    for _name in (_type.name, *_type.aliases):
        assert _name not in LAYER_TYPES, _name  # two types may not claim one name
        LAYER_TYPES[_name] = _type

__all__ = ["LAYER_TYPES", "REQUIRED"]
