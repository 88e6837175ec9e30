"""Op rules, one module per family; importing this package registers them all."""

from archcalc.rules import activation, conv, elementwise, linear, norm, pool, reduce, shape, tensor  # noqa: F401
