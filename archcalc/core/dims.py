"""Tensor dimensions that may be symbolic.

A dim is a plain ``int`` or a :class:`Sym`, a polynomial with integer coefficients over
named symbols (``batch``, ``seq``). Rules do their arithmetic with ``+ - * //`` and
never need to know which kind they hold; counts built from symbolic shapes stay
polynomials (``2*batch*...``) until :func:`bind` turns them into ints. Python ints do
not overflow, so no count is ever truncated.

A floor division that does not divide a polynomial exactly becomes an opaque atom
(:class:`FloorDiv`) that still binds to the right number later; so does the smaller of
two dims that cannot be compared yet (:class:`Minimum`, for ceil_mode pooling).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard, overload

from archcalc.core.errors import ShapeError, UnboundDim


class Sym:
    """A polynomial in symbolic dims; immutable and hashable."""

    # The hash is made once: the engine hashes a shape's dims in every layer's rule-cache key,
    # and hashing the nested terms tuple is Python-level work each time.
    __slots__ = ("terms", "_hash")

    def __init__(self, terms: Mapping[Monomial, int]):
        self.terms: tuple[tuple[Monomial, int], ...] = tuple(
            sorted(((m, c) for m, c in terms.items() if c), key=lambda mc: _monomial_key(mc[0]))
        )
        self._hash = hash(self.terms)

    @classmethod
    def _sorted(cls, terms: tuple[tuple[Monomial, int], ...]) -> Sym:
        """Build from terms already in canonical order (scaling keeps the order)."""
        sym = cls.__new__(cls)
        sym.terms = terms
        sym._hash = hash(terms)
        return sym

    def __reduce__(self) -> tuple[Any, ...]:
        # A copy made in another process hashes its strings with that process's seed: rebuild.
        return Sym._sorted, (self.terms,)

    @staticmethod
    def symbol(name: str) -> Sym:
        return Sym({(name,): 1})

    # Arithmetic returns a plain int when the symbols cancel out.
    def _combine(self, other: Dim, sign: int) -> Dim:
        if isinstance(other, Sym) and len(other.terms) == len(self.terms):
            # The common case (2*macs + adds): the same monomials in the same order. Their sum
            # keeps that canonical order, unless a coefficient cancels.
            same: list[tuple[Monomial, int]] = []
            for (mono, coeff), (other_mono, other_coeff) in zip(self.terms, other.terms):
                total = coeff + sign * other_coeff
                if mono != other_mono or not total:
                    break
                same.append((mono, total))
            else:
                return Sym._sorted(tuple(same))
        terms = dict(self.terms)
        for mono, coeff in _terms_of(other):
            terms[mono] = terms.get(mono, 0) + sign * coeff
        return _normalise(terms)

    def __add__(self, other: Dim) -> Dim:
        return self._combine(other, 1)

    __radd__ = __add__

    def __sub__(self, other: Dim) -> Dim:
        return self._combine(other, -1)

    def __rsub__(self, other: Dim) -> Dim:
        return (-1 * self) + other

    def __mul__(self, other: Dim) -> Dim:
        if type(other) is int:
            # The common case (a symbolic batch times static dims): no re-sorting needed.
            if other == 0:
                return 0
            if len(self.terms) == 1:
                ((mono, coeff),) = self.terms
                return Sym._sorted(((mono, coeff * other),))
            return Sym._sorted(tuple((m, c * other) for m, c in self.terms))
        if len(self.terms) == 1 and isinstance(other, Sym) and len(other.terms) == 1:
            # Two single terms (batch * seq): one non-zero term, with a non-empty monomial.
            ((m1, c1),), ((m2, c2),) = self.terms, other.terms
            return Sym._sorted(((tuple(sorted(m1 + m2, key=_atom_key)), c1 * c2),))
        terms: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in _terms_of(other):
                mono = tuple(sorted(m1 + m2, key=_atom_key))
                terms[mono] = terms.get(mono, 0) + c1 * c2
        return _normalise(terms)

    __rmul__ = __mul__

    def __floordiv__(self, divisor: Dim) -> Dim:
        if isinstance(divisor, Sym):
            quotient = _exact_quotient_by_sym(self, divisor)
            if quotient is None:
                raise ShapeError(f"cannot divide symbolic dim {self} by {divisor}")
            return quotient
        if divisor == 1:
            return self
        if all(c % divisor == 0 for _, c in self.terms):
            return _normalise({m: c // divisor for m, c in self.terms})
        if divisor < 0:
            return Sym({(FloorDiv(self, divisor),): 1})
        # One canonical form for a floor, so that the same dim written two ways compares equal
        # (a conv stack's floor((floor((s - 10)/5) - 2)/2) and an exporter's floor(s/10) - 2):
        # floor((P + d*Q)/d) = floor(P/d) + Q, and floor(floor(x/a)/d) = floor(x/(a*d)) for
        # positive a and d, both for every integer.
        whole = {m: c // divisor for m, c in self.terms if c % divisor == 0}
        rest = Sym({m: c for m, c in self.terms if c % divisor})
        if len(rest.terms) == 1 and rest.terms[0][1] == 1 and len(rest.terms[0][0]) == 1 \
                and isinstance(inner := rest.terms[0][0][0], FloorDiv) and inner.divisor > 0:
            floor: Dim = Sym({(FloorDiv(inner.numerator, inner.divisor * divisor),): 1})
        else:
            floor = Sym({(FloorDiv(rest, divisor),): 1})
        return floor + _normalise(whole) if whole else floor

    def __rfloordiv__(self, other: Dim) -> Dim:
        raise ShapeError(f"cannot divide {other} by symbolic dim {self}")

    def __neg__(self) -> Dim:
        return self * -1

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Sym) and self._hash == other._hash and self.terms == other.terms)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        # Shapes appear in messages as lists: [batch, 3, 224, 224] reads better than Sym(batch).
        return str(self)

    def __str__(self) -> str:
        if len(self.terms) == 1:  # the common case, a plain symbol such as batch: no joining
            ((mono, coeff),) = self.terms
            if coeff == 1 and len(mono) == 1 and type(mono[0]) is str:
                return mono[0]
        parts = []
        for mono, coeff in self.terms:
            factors = [str(a) for a in mono]
            if coeff != 1 or not factors:
                factors.insert(0, str(coeff))
            parts.append("*".join(factors))
        return " + ".join(parts).replace("+ -", "- ") or "0"

    def symbols(self) -> set[str]:
        names: set[str] = set()
        for mono, _ in self.terms:
            for atom in mono:
                names |= {atom} if isinstance(atom, str) else atom.symbols()
        return names


@dataclass(frozen=True)
class FloorDiv:
    """floor(numerator / divisor) for a numerator that the divisor does not divide."""

    numerator: Sym
    divisor: int

    def __str__(self) -> str:
        return f"floor(({self.numerator})/{self.divisor})"

    def symbols(self) -> set[str]:
        return self.numerator.symbols()

    def value(self, env: Mapping[str, int]) -> int:
        return bind(self.numerator, env) // self.divisor


@dataclass(frozen=True)
class Minimum:
    """min(first, second) for dims whose order is only known once symbols are bound."""

    first: Sym | int
    second: Sym | int

    def __str__(self) -> str:
        return f"min({self.first}, {self.second})"

    def symbols(self) -> set[str]:
        return set().union(*(d.symbols() for d in (self.first, self.second) if isinstance(d, Sym)))

    def value(self, env: Mapping[str, int]) -> int:
        return min(bind(self.first, env), bind(self.second, env))


Dim = int | Sym
Monomial = tuple[str | FloorDiv | Minimum, ...]  # sorted tuple of atoms (symbol names, FloorDiv or Minimum)


_atom_key = str  # atoms sort by their printed form


def _monomial_key(mono: Monomial) -> tuple[int, str]:
    # Highest degree first, constants last: "2*batch + 1".
    return (-len(mono), "*".join(map(str, mono)))


def _terms_of(dim: Dim) -> tuple[tuple[Monomial, int], ...]:
    return dim.terms if isinstance(dim, Sym) else (((), dim),)


def _normalise(terms: Mapping[Monomial, int]) -> Dim:
    live = {m: c for m, c in terms.items() if c}
    if not live:
        return 0
    if set(live) == {()}:
        return live[()]
    return Sym(live)


def sum_dims(dims: Iterable[Dim]) -> Dim:
    """Sum of dims by monomial in one dict (adding Syms one by one re-sorts each time)."""
    terms: dict[Monomial, int] = {}
    for dim in dims:
        for mono, coeff in _terms_of(dim):
            terms[mono] = terms.get(mono, 0) + coeff
    return _normalise(terms)


def _exact_quotient_by_sym(numerator: Sym, divisor: Sym) -> Dim | None:
    """numerator / divisor when divisor is a single monomial that divides every term, or a
    sum of which numerator is a monomial multiple (a Reshape's element count over the other
    dims': (64*batch*L + 64*batch) / (16*batch*L + 16*batch) = 4, L a floor of a conv stack)."""
    if len(divisor.terms) != 1:
        # The quotient, if a monomial, is numerator's first term over one of divisor's terms.
        first = Sym._sorted(numerator.terms[:1])
        for term in divisor.terms:
            quotient = _exact_quotient_by_sym(first, Sym._sorted((term,)))
            if quotient is not None and quotient * divisor == numerator:
                return quotient
        return None
    (dmono, dcoeff), = divisor.terms
    terms: dict[Monomial, int] = {}
    for mono, coeff in numerator.terms:
        rest = list(mono)
        for atom in dmono:
            if atom not in rest:
                return None
            rest.remove(atom)
        if coeff % dcoeff:
            return None
        terms[tuple(rest)] = coeff // dcoeff
    return _normalise(terms)


def is_static(dim: object) -> TypeGuard[int]:
    """Whether `dim` is a plain int (not symbolic); any value may be asked (an absent one is not)."""
    return isinstance(dim, int)


def is_static_shape(dims: Sequence[Dim]) -> TypeGuard[Sequence[int]]:
    """Whether every dim of `dims` is a plain int."""
    return all(isinstance(d, int) for d in dims)


def ceil_div(numerator: Dim, divisor: int) -> Dim:
    return (numerator + divisor - 1) // divisor


def minimum(first: Dim, second: Dim) -> Dim:
    if is_static(first) and is_static(second):
        return min(first, second)
    if first == second:
        return first
    return Sym({(Minimum(first, second),): 1})


@overload
def prod(dims: Iterable[int]) -> int: ...


@overload
def prod(dims: Iterable[Dim]) -> Dim: ...


def prod(dims: Iterable[Dim]) -> Dim:
    static = 1
    symbolic: Dim = 1
    for dim in dims:
        # Static dims multiply as plain ints; each symbolic factor costs a polynomial product.
        if type(dim) is int:
            static *= dim
        else:
            symbolic = dim if symbolic == 1 else symbolic * dim
    return static if symbolic == 1 else symbolic * static


def bind(dim: Dim, env: Mapping[str, int]) -> int:
    """The int value of `dim` with every symbol replaced from `env`."""
    if isinstance(dim, int):
        return dim
    total = 0
    for mono, coeff in dim.terms:
        value = coeff
        for atom in mono:
            if isinstance(atom, str):
                if atom not in env:
                    raise UnboundDim(atom)
                value *= env[atom]
            else:
                value *= atom.value(env)
        total += value
    return total


def bind_known(dim: Dim, env: Mapping[str, int]) -> tuple[int, set[str]]:
    """The int value of the terms of `dim` whose symbols `env` binds, and the names of those
    it does not: the part of a count that is known while some dim is only known at run time."""
    if isinstance(dim, int):
        return dim, set()
    total = 0
    missing: set[str] = set()
    for mono, coeff in dim.terms:
        names = {name for atom in mono for name in ({atom} if isinstance(atom, str) else atom.symbols())}
        unbound = {name for name in names if name not in env}
        if unbound:
            missing |= unbound
        else:
            total += bind(Sym({mono: coeff}), env)
    return total, missing


def bind_shape(shape: Iterable[Dim], env: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(bind(d, env) for d in shape)


def shape_symbols(shape: Iterable[Dim]) -> set[str]:
    """The names of the symbolic dims a shape (or any dims) depends on."""
    return {name for dim in shape if isinstance(dim, Sym) for name in dim.symbols()}


def dim_to_json(dim: Dim) -> int | str:
    return dim if isinstance(dim, int) else str(dim)


def format_shape(shape: Iterable[Dim]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def substitute(dim: Dim, env: Mapping[str, int]) -> Dim:
    """`dim` with the symbols `env` names replaced by their values and the others kept: a
    count partly bound (``--dim seq=512`` leaves a formula in batch). A floor or min whose
    symbols all get values becomes an int."""
    if isinstance(dim, int) or not env:
        return dim
    total: Dim = 0
    for mono, coeff in dim.terms:
        term: Dim = coeff
        for atom in mono:
            term = term * _substitute_atom(atom, env)
        total = total + term
    return total


def _substitute_atom(atom: str | FloorDiv | Minimum, env: Mapping[str, int]) -> Dim:
    if isinstance(atom, str):
        return env[atom] if atom in env else Sym.symbol(atom)
    if isinstance(atom, FloorDiv):
        numerator = substitute(atom.numerator, env)
        return numerator // atom.divisor  # an int floors; a polynomial divides exactly or stays an atom
    return minimum(substitute(atom.first, env), substitute(atom.second, env))


def polynomial_json(dim: Dim) -> dict[str, object]:
    """`dim` as a structured polynomial for JSON: integer coefficients by monomial, each
    monomial the powers of its symbols; a factor that is not a symbol (a floor of a division,
    a min) is written out as its own structure, so the value stays exact."""
    terms = []
    for mono, coeff in _terms_of(dim):
        powers: dict[str, int] = {}
        others: list[dict[str, object]] = []
        for atom in mono:
            if isinstance(atom, str):
                powers[atom] = powers.get(atom, 0) + 1
            elif isinstance(atom, FloorDiv):
                others.append({"floor_div": {"numerator": polynomial_json(atom.numerator), "divisor": atom.divisor}})
            else:
                others.append({"min": [polynomial_json(atom.first), polynomial_json(atom.second)]})
        if not coeff:
            continue
        term: dict[str, object] = {"coefficient": coeff, "powers": powers}
        if others:
            term["factors"] = others
        terms.append(term)
    return {"text": formula_text(dim, separators=False), "polynomial": not any(
        not isinstance(atom, str) for mono, _ in _terms_of(dim) for atom in mono), "terms": terms}


def polynomial_from_json(document: Mapping[str, object]) -> Dim:
    """The inverse of :func:`polynomial_json` (tests and scripts reading archcalc's JSON)."""
    total: Dim = 0
    terms = document["terms"]
    assert isinstance(terms, list)
    for term in terms:
        value: Dim = term["coefficient"]
        for name, power in term["powers"].items():
            for _ in range(power):
                value = value * Sym.symbol(name)
        for factor in term.get("factors", ()):
            if "floor_div" in factor:
                floor = factor["floor_div"]
                value = value * (polynomial_from_json(floor["numerator"]) // floor["divisor"])
            else:
                first, second = factor["min"]
                value = value * minimum(polynomial_from_json(first), polynomial_from_json(second))
        total = total + value
    return total


def formula_text(dim: Dim, separators: bool = True) -> str:
    """`dim` for people: powers written once, coefficients with thousands separators
    (``18,432*batch*seq^2 + 123,532,032*batch*seq``; without them for machines)."""
    parts = []
    for mono, coeff in _terms_of(dim):
        factors = []
        for atom, group in itertools.groupby(mono):
            power = len(list(group))
            text = _symbol_text(atom) if isinstance(atom, str) else (
                f"floor(({formula_text(atom.numerator, separators)})/{atom.divisor})" if isinstance(atom, FloorDiv)
                else f"min({formula_text(atom.first, separators)}, {formula_text(atom.second, separators)})")
            factors.append(text if power == 1 else f"{text}^{power}")
        if abs(coeff) != 1 or not factors:
            factors.insert(0, f"{abs(coeff):,}" if separators else str(abs(coeff)))
        parts.append(("- " if coeff < 0 else "+ ") + "*".join(factors))
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else ("-" + text[2:] if text else "0")


def _symbol_text(name: str) -> str:
    """A dim's name as a formula shows it: quoted unless it is one word, so that an export's
    `past_sequence_length + 1` reads as one dim, not as a sum."""
    return name if name.isidentifier() else repr(name)
