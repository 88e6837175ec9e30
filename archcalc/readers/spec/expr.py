"""Expressions in specs: `$name` and `${...}` with arithmetic, comparisons and `x if c else y`.

Evaluated with a whitelist over Python's own parser: no attribute access, no calls
but min/max, so a spec can never run code. Arithmetic takes numbers only and every
integer result is bounded, so a spec can neither hang the evaluator (`9 ** 9 ** 9`,
`[1] * 10**8`) nor build a number too long to print.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Mapping
from typing import Any

from archcalc.core.errors import SpecError

_WHOLE = re.compile(r"^\$(?:\{(.*)\}|([A-Za-z_][A-Za-z0-9_]*))$", re.S)
_PART = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Div: operator.truediv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
            ast.NotIn: lambda a, b: a not in b}
_FUNCTIONS = {"min": min, "max": max}

# Sizes and counts fit in int64 (what ONNX stores); anything larger is a typo, and
# bounding every intermediate keeps each operation cheap.
MAX_INT = 2**63 - 1
# Longer texts are not arithmetic a person writes; the bound also keeps Python's parser
# and this evaluator's recursion shallow.
MAX_LENGTH = 500
_ALLOWED = "use numbers, names, + - * / // % **, comparisons, and/or/not, x if c else y, min(), max()"


def _number(value: Any, node: ast.AST) -> Any:
    if isinstance(value, (int, float)):
        return value
    raise SpecError(f"'{ast.unparse(node)}': arithmetic needs numbers, got {value!r}",
                    fix="apply + - * / // % ** to numbers only (lists and strings cannot be repeated or joined)")


def _too_large(node: ast.AST, detail: str = "") -> SpecError:
    text = ast.unparse(node)
    text = text if len(text) <= 60 else text[:57] + "..."
    return SpecError(f"'{text}' is larger than 2**63 - 1{detail}",
                     fix="sizes and counts must fit in int64: check the expression and its arguments")


def _bounded(value: Any, node: ast.AST) -> Any:
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise _too_large(node)
    return value


def _binary(node: ast.BinOp, env: Mapping[str, Any]) -> Any:
    left, right = _number(_eval(node.left, env), node), _number(_eval(node.right, env), node)
    if isinstance(node.op, ast.Pow) and isinstance(right, int) and abs(left) > 1 and right > 64:
        # Refused before computing: 9 ** 9 ** 9 has 370 million digits and would take minutes.
        raise _too_large(node, f" (exponent {right})")
    try:
        return _bounded(_BINARY[type(node.op)](left, right), node)
    except OverflowError:  # float arithmetic (10.0 ** 400)
        raise _too_large(node) from None


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant):
        return _bounded(node.value, node)
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        if node.id in ("true", "false"):
            return node.id == "true"
        known = ", ".join(sorted(env)) or "none"
        raise SpecError(f"unknown name '{node.id}' in expression; known: {known}",
                        fix="use a block arg, or `i` (the repeat index); declare new names under the block's `args:`")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _binary(node, env)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        if isinstance(node.op, ast.USub):
            return -_number(value, node)
        if isinstance(node.op, ast.Not):
            return not value
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, env)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body, env) if _eval(node.test, env) else _eval(node.orelse, env)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
            and not node.keywords:
        return _FUNCTIONS[node.func.id](*(_eval(a, env) for a in node.args))
    raise SpecError(f"'{ast.unparse(node)}' is not allowed in an expression", fix=_ALLOWED)


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    if len(text) > MAX_LENGTH:
        raise SpecError(f"the expression '{text[:40]}...' is {len(text)} characters long, over {MAX_LENGTH}",
                        fix="write a shorter expression, or compute the value and write the number")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):  # ValueError: a literal too long to read
        raise SpecError(f"'{text}' is not a valid expression", fix=_ALLOWED) from None
    try:
        return _eval(tree, env)
    except (TypeError, ZeroDivisionError) as error:
        raise SpecError(f"expression '{text}' failed: {error}",
                        fix="check the values of the names it uses (block args, `i`)") from None


def _expression(match: re.Match[str]) -> str:
    """The text of `${...}` (empty in `${}`, which is then no valid expression) or of `$name`."""
    braced = match.group(1)
    return braced if braced is not None else match.group(2)


def substitute(value: Any, env: Mapping[str, Any]) -> Any:
    """Replace `$x` / `${...}` in `value` (recursively in lists and mappings)."""
    if isinstance(value, str) and "$" in value:
        whole = _WHOLE.match(value)
        if whole:
            return evaluate(_expression(whole), env)
        return _PART.sub(lambda m: str(evaluate(_expression(m), env)), value)
    if isinstance(value, list):
        return [substitute(v, env) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, env) for k, v in value.items()}
    return value
