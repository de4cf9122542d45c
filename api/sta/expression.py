"""`$filter` expressions (OData 4 as SensorThings 1.1 uses them, 18-088 §9.3.3.5), by hand.

What it is for: reading a `$filter` text into a small typed tree (`parse`), then answering it
three ways: for one entity of the small entity sets (`matches`, over a property lookup), for a
batch of observations at once (`mask`, numpy over times and values), and as the time range it
can only be true in (`time_bounds`), which the observation reader pushes down to the store.

Supported: comparisons `eq ne gt ge lt le`, `and`, `or`, `not`, parentheses; literals: strings
in single quotes (`''` for a quote), numbers, `true`, `false`, `null`, and ISO 8601 instants
with an offset (`2026-11-20T12:00:00Z`, unquoted as the standard writes them); property paths
(`name`, `properties/pilot`). Arithmetic, functions (`substringof`, `geo.intersects`,
`st_within`, ...), lambdas and navigation paths are refused with 501 (`unsupported`), other
text with 400; `settle` lets a caller answer some comparisons itself first (`api.sta.paging`
does so for an Observation's `Datastream/...` and `FeatureOfInterest/...`, per series). The
text, its token count and its nesting are bounded (`MAX_LENGTH`, `MAX_TOKENS`, `MAX_DEPTH`)
before anything recursive runs.

Why by hand: the Python OData parsers on PyPI were looked at first. `odata-query` parses
`$filter` only (no `$expand` with nested options, which `api.sta.options` needs anyway), into
an AST meant for SQLAlchemy or Django, on top of the `sly` parser generator; `odata-v4-query`
targets ORM and Mongo queries. Neither reads SensorThings' unquoted instants, and neither
gives the time range a filter implies, which is what keeps an observation request bounded.
The grammar needed is small (a precedence climb over six operators), so it lives here.
This module must not read the store or the registry.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Literal as TypingLiteral

import numpy as np
from numpy.typing import NDArray

from api.sta.errors import bad, unsupported
from core.timeutil import NS_PER_S, parse_instant_ns

MAX_LENGTH = 1000
#: Instants a filter may name (as `api.deps`), so that every bound fits the store's int64.
EARLIEST_NS = -2_208_988_800 * NS_PER_S  # 1900-01-01T00:00:00Z
LATEST_NS = 7_258_118_400 * NS_PER_S  # 2200-01-01T00:00:00Z
MAX_TOKENS = 200
MAX_DEPTH = 16

Comparison = TypingLiteral["eq", "ne", "gt", "ge", "lt", "le"]
COMPARISONS: tuple[Comparison, ...] = ("eq", "ne", "gt", "ge", "lt", "le")
_FLIPPED: dict[Comparison, Comparison] = {
    "eq": "eq",
    "ne": "ne",
    "gt": "lt",
    "ge": "le",
    "lt": "gt",
    "le": "ge",
}
_COMPARISON_OF: dict[str, Comparison] = {c: c for c in COMPARISONS}
_ARITHMETIC = frozenset({"add", "sub", "mul", "div", "mod"})
_OTHER_OPERATORS = frozenset({"has", "in"})

#: Observation properties that are instants (both are the reading's device time here).
TIME_PROPERTIES = frozenset({"phenomenonTime", "resultTime"})


@dataclass(frozen=True, slots=True)
class Instant:
    """A date-time literal, in nanoseconds since the epoch."""

    ts_ns: int


Value = str | float | int | bool | Instant | None


@dataclass(frozen=True, slots=True)
class Const:
    """A literal."""

    value: Value


@dataclass(frozen=True, slots=True)
class Path:
    """A property path, e.g. `name` or `properties/pilot`."""

    parts: tuple[str, ...]

    @property
    def text(self) -> str:
        """The path as written."""
        return "/".join(self.parts)


@dataclass(frozen=True, slots=True)
class Compare:
    """`left op right`."""

    op: Comparison
    left: Const | Path
    right: Const | Path


@dataclass(frozen=True, slots=True)
class Logical:
    """`left and right`, `left or right`."""

    op: TypingLiteral["and", "or"]
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    """`not operand`."""

    operand: Expr


Expr = Compare | Logical | Not | Const | Path

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<instant>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<name>[A-Za-z_@$][A-Za-z0-9_.@]*(?:/[A-Za-z_@$][A-Za-z0-9_.@]*)*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> list[_Token]:
    if len(text) > MAX_LENGTH:
        raise bad(f"$filter is {len(text)} characters long; at most {MAX_LENGTH} are read")
    out: list[_Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise bad(f"$filter: cannot read {text[at : at + 20]!r} at character {at}")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append(_Token(kind, match.group(), at))
            if len(out) > MAX_TOKENS:
                raise bad(f"$filter has more than {MAX_TOKENS} terms")
        at = match.end()
    return out


class _Parser:
    """Precedence climbing: or < and < not < comparison < primary."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def word(self) -> str:
        token = self.peek()
        return token.text if token is not None and token.kind == "name" else ""

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise bad("$filter ends too early")
        self.at += 1
        return token

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise bad(f"$filter nests deeper than {MAX_DEPTH} levels")

    def expression(self) -> Expr:
        self.nested()
        left = self.conjunction()
        while self.word() == "or":
            self.take()
            left = Logical("or", left, self.conjunction())
        self.depth -= 1
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.word() == "and":
            self.take()
            left = Logical("and", left, self.negation())
        return left

    def negation(self) -> Expr:
        if self.word() == "not":
            self.take()
            self.nested()
            operand = self.negation()
            self.depth -= 1
            return Not(operand)
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.primary()
        op = self.word()
        comparison = _COMPARISON_OF.get(op)
        if comparison is not None:
            self.take()
            right = self.primary()
            if not isinstance(left, Const | Path) or not isinstance(right, Const | Path):
                raise bad("$filter: compare a property with a value, e.g. result gt 5")
            return Compare(comparison, left, right)
        if op in _ARITHMETIC:
            raise unsupported(f"$filter: arithmetic ({op}) is not supported by this service")
        if op in _OTHER_OPERATORS:
            raise unsupported(f"$filter: the {op!r} operator is not supported by this service")
        return left

    def primary(self) -> Expr:
        token = self.take()
        if token.kind == "open":
            inner = self.expression()
            if self.take().kind != "close":
                raise bad(f"$filter: expected ')' after character {token.at}")
            return inner
        if token.kind == "string":
            return Const(token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            number = float(token.text)
            if not math.isfinite(number):
                raise bad(f"$filter: {token.text} is not a finite number")
            return Const(
                int(token.text)
                if number.is_integer() and "." not in token.text and "e" not in token.text.lower()
                else number
            )
        if token.kind == "instant":
            try:
                ts_ns = parse_instant_ns(token.text)
            except (ValueError, OverflowError) as exc:
                raise bad(f"$filter: {exc}") from exc
            if not EARLIEST_NS <= ts_ns < LATEST_NS:
                raise bad(f"$filter: {token.text} is not from 1900 to before 2200")
            return Const(Instant(ts_ns))
        if token.kind == "name":
            return self.name(token)
        raise bad(f"$filter: unexpected {token.text!r} at character {token.at}")

    def name(self, token: _Token) -> Expr:
        text = token.text
        nxt = self.peek()
        if nxt is not None and nxt.kind == "open":
            raise unsupported(f"$filter: the function {text}() is not supported by this service")
        if text in ("true", "false"):
            return Const(text == "true")
        if text == "null":
            return Const(None)
        if text in ("and", "or", "not", *COMPARISONS):
            raise bad(f"$filter: {text!r} at character {token.at} needs an operand before it")
        if "'" in text or (nxt is not None and nxt.kind == "string"):
            # geography'POINT(..)' and other typed literals
            raise unsupported(f"$filter: typed literals ({text}'...') are not supported")
        return Path(tuple(text.split("/")))


def parse(text: str) -> Expr:
    """The tree of a `$filter` text; `StaError` 400 (bad) or 501 (not implemented)."""
    tokens = _tokens(text)
    if not tokens:
        raise bad("$filter is empty")
    parser = _Parser(tokens)
    tree = parser.expression()
    rest = parser.peek()
    if rest is not None:
        raise bad(f"$filter: unexpected {rest.text!r} at character {rest.at}")
    return tree


def paths(expr: Expr) -> set[str]:
    """Every property path the expression names."""
    if isinstance(expr, Path):
        return {expr.text}
    if isinstance(expr, Compare):
        return paths(expr.left) | paths(expr.right)
    if isinstance(expr, Logical):
        return paths(expr.left) | paths(expr.right)
    if isinstance(expr, Not):
        return paths(expr.operand)
    return set()


# -- one entity ----------------------------------------------------------------------------------


_ORDERED: dict[Comparison, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def _compare(op: Comparison, a: object, b: object) -> bool:
    if op in ("eq", "ne"):
        return (a == b) == (op == "eq")
    if a is None or b is None:
        return False
    if isinstance(a, str) != isinstance(b, str) or isinstance(a, bool) != isinstance(b, bool):
        return False  # OData would refuse the types; a plain "no match" is kinder
    try:
        return bool(_ORDERED[op](a, b))
    except TypeError:
        return False


def matches(expr: Expr, lookup: Callable[[Path], object]) -> bool:
    """Whether one entity passes; `lookup` gives a path's value (raising `StaError` if unknown)."""

    def value(term: Const | Path) -> object:
        if isinstance(term, Path):
            return lookup(term)
        return term.value.ts_ns if isinstance(term.value, Instant) else term.value

    if isinstance(expr, Compare):
        return _compare(expr.op, value(expr.left), value(expr.right))
    if isinstance(expr, Logical):
        if expr.op == "and":
            return matches(expr.left, lookup) and matches(expr.right, lookup)
        return matches(expr.left, lookup) or matches(expr.right, lookup)
    if isinstance(expr, Not):
        return not matches(expr.operand, lookup)
    return value(expr) is True


def settle(expr: Expr, decide: Callable[[Compare], bool | None]) -> Expr | bool:
    """The expression with the comparisons `decide` can answer replaced by their truth.

    What is left once `and`, `or` and `not` are simplified: True or False when nothing else
    matters, else the rest of the expression (the comparisons `decide` left, None for them).
    """
    if isinstance(expr, Compare):
        known = decide(expr)
        return expr if known is None else known
    if isinstance(expr, Not):
        inner = settle(expr.operand, decide)
        return (not inner) if isinstance(inner, bool) else Not(inner)
    if isinstance(expr, Logical):
        left, right = settle(expr.left, decide), settle(expr.right, decide)
        absorbing = expr.op == "or"  # True absorbs an `or`, False an `and`
        for one, other in ((left, right), (right, left)):
            if isinstance(one, bool):
                return absorbing if one is absorbing else other
        assert not isinstance(left, bool) and not isinstance(right, bool)
        return Logical(expr.op, left, right)
    return expr


def compare_values(op: Comparison, a: object, b: object) -> bool:
    """`a op b` for two plain values (instants as nanoseconds), as `matches` compares."""
    return _compare(op, a, b)


# -- observations, whole arrays at once -----------------------------------------------------------


def _normalised(expr: Compare) -> tuple[str, Comparison, Value]:
    """`(property, op, literal)` with the property on the left, or 400/501."""
    if isinstance(expr.left, Path) and isinstance(expr.right, Const):
        return expr.left.text, expr.op, expr.right.value
    if isinstance(expr.left, Const) and isinstance(expr.right, Path):
        return expr.right.text, _FLIPPED[expr.op], expr.left.value
    raise bad("$filter: compare an observation's property with a value, e.g. result gt 5")


_UFUNCS: dict[Comparison, Callable[..., NDArray[np.bool_]]] = {
    "eq": np.equal,
    "ne": np.not_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "lt": np.less,
    "le": np.less_equal,
}


def check_observation_filter(expr: Expr) -> None:
    """Refuse (400/501) a filter `mask` cannot answer, before anything is read."""
    mask(expr, np.zeros(0, np.int64), np.zeros(0, np.float64))


def mask(expr: Expr, ts_ns: NDArray[np.int64], value: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which observations (times, results) pass; `StaError` for what cannot apply to them."""
    if isinstance(expr, Logical):
        left, right = mask(expr.left, ts_ns, value), mask(expr.right, ts_ns, value)
        return left & right if expr.op == "and" else left | right
    if isinstance(expr, Not):
        return ~mask(expr.operand, ts_ns, value)
    if isinstance(expr, Compare):
        return _compare_arrays(*_normalised(expr), ts_ns, value)
    raise bad("$filter: an observation filter needs comparisons, e.g. result gt 5")


def _compare_arrays(
    name: str, op: Comparison, literal: Value, ts_ns: NDArray[np.int64], value: NDArray[np.float64]
) -> NDArray[np.bool_]:
    if name in TIME_PROPERTIES:
        if not isinstance(literal, Instant):
            raise bad(f"$filter: compare {name} with an instant, e.g. 2026-11-20T00:00:00Z")
        return _UFUNCS[op](ts_ns, literal.ts_ns)
    if name == "result":
        if literal is None:
            return np.full(len(value), op == "ne", dtype=np.bool_)  # results are never null
        if isinstance(literal, bool) or not isinstance(literal, int | float):
            raise bad("$filter: results are numbers here; compare result with a number")
        return _UFUNCS[op](value, float(literal))
    if name in ("id", "@iot.id", "validTime", "resultQuality", "parameters"):
        raise unsupported(f"$filter on the observations' {name} is not supported")
    if "/" in name:
        raise unsupported(f"$filter: navigation paths ({name}) are not supported")
    raise bad(f"$filter: observations have no property {name!r}")


def time_bounds(expr: Expr) -> tuple[int | None, int | None]:
    """A range `[lo, hi)` outside which the filter is false for every observation (None: open).

    Conservative: `not` and comparisons of anything but the time give the whole line.
    """
    if isinstance(expr, Logical):
        (a_lo, a_hi), (b_lo, b_hi) = time_bounds(expr.left), time_bounds(expr.right)
        if expr.op == "and":
            return _pick(max, a_lo, b_lo), _pick(min, a_hi, b_hi)
        lo = None if a_lo is None or b_lo is None else min(a_lo, b_lo)
        hi = None if a_hi is None or b_hi is None else max(a_hi, b_hi)
        return lo, hi
    if isinstance(expr, Compare):
        try:
            name, op, literal = _normalised(expr)
        except Exception:
            return None, None
        if name in TIME_PROPERTIES and isinstance(literal, Instant):
            t = literal.ts_ns
            return {
                "eq": (t, t + 1),
                "gt": (t + 1, None),
                "ge": (t, None),
                "lt": (None, t),
                "le": (None, t + 1),
            }.get(op, (None, None))
    return None, None


def _pick(choose: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)
