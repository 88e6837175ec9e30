"""Op rules, one module per family; importing this package registers them all."""

from archcalc.rules import (  # noqa: F401
    activation,
    attention,
    contrib_fused,
    contrib_layout,
    contrib_quant,
    contrib_transformer,
    control,
    conv,
    elementwise,
    linear,
    norm,
    pool,
    quantize,
    random,
    recurrent,
    reduce,
    shape,
    tensor,
)
