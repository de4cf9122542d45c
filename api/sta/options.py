"""The query options of a SensorThings request (18-088 §9.3), read and bounded, by hand.

What it is for: turning `$top`, `$skip`, `$count`, `$orderby`, `$select`, `$expand` (with its
nested options in parentheses, `Datastreams($top=2;$expand=ObservedProperty)`, and the path
form `Datastreams/ObservedProperty`), `$filter` (`api.sta.expression`), `$resultFormat` and
the paging token `$skiptoken` into one `Options` value. Every option's text has a length
bound, `$expand` nests at most `MAX_EXPAND_DEPTH` levels and names at most `MAX_EXPANDS`
relations in all; what the standard defines but this service does not do (`$search`,
`$levels`, `$format`, `$apply`) is a 501, anything else a 400. Why a hand-written parser: see
`api.sta.expression`. This module must not read the store or the registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from api.sta import expression
from api.sta.errors import bad, unsupported

#: The longest text one option may have (`$filter` has its own, `expression.MAX_LENGTH`).
MAX_OPTION_LENGTH = 2000
MAX_EXPAND_DEPTH = 2
MAX_EXPANDS = 12
MAX_ORDERBY = 4
MAX_SELECT = 32
#: `$top` and `$skip` above this are refused; below it a large `$top` is served in pages.
MAX_INTEGER = 2**31 - 1

KNOWN = frozenset(
    {"$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter", "$resultFormat"}
)
NOT_IMPLEMENTED = frozenset({"$search", "$levels", "$format", "$apply", "$compute", "$index"})
_NAME = re.compile(r"^[A-Za-z@][A-Za-z0-9_.@/]*$")


@dataclass(frozen=True)
class OrderBy:
    """One `$orderby` key."""

    path: str
    descending: bool


@dataclass(frozen=True)
class Expand:
    """One relation to expand, with the options that apply to it."""

    name: str
    options: Options


@dataclass(frozen=True)
class Options:
    """The query options of one request, or of one expanded relation."""

    top: int | None = None
    skip: int = 0
    count: bool = False
    orderby: tuple[OrderBy, ...] = ()
    select: tuple[str, ...] | None = None
    expand: tuple[Expand, ...] = ()
    filter: expression.Expr | None = None
    filter_text: str | None = None
    data_array: bool = False
    skiptoken: str | None = None
    #: The options as given (for nextLinks), in order.
    given: tuple[tuple[str, str], ...] = field(default=(), compare=False)


def _split(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise bad(f"unbalanced ')' in {text[:80]!r}")
        elif char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise bad(f"unbalanced parentheses or quotes in {text[:80]!r}")
    parts.append(text[start:])
    return parts


def _integer(name: str, text: str) -> int:
    # ASCII digits only: `str.isdigit` is also true for '²', which `int()` refuses.
    if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) > MAX_INTEGER:
        raise bad(f"{name} must be a whole number from 0 to {MAX_INTEGER}, not {text[:40]!r}")
    return int(text)


def _orderby(text: str) -> tuple[OrderBy, ...]:
    keys: list[OrderBy] = []
    for part in _split(text, ","):
        words = part.split()
        if len(words) == 2:  # FROST's own client writes ASC and DESC
            words[1] = words[1].lower()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise bad(f"$orderby: cannot read {part.strip()[:80]!r}; write e.g. name desc")
        if "(" in words[0]:
            raise unsupported(f"$orderby: functions ({words[0][:40]}) are not supported")
        if not _NAME.match(words[0]):
            raise bad(f"$orderby: {words[0][:40]!r} is not a property")
        keys.append(OrderBy(words[0], len(words) == 2 and words[1] == "desc"))
    if len(keys) > MAX_ORDERBY:
        raise bad(f"$orderby names more than {MAX_ORDERBY} properties")
    return tuple(keys)


def _select(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(","))
    if len(names) > MAX_SELECT:
        raise bad(f"$select names more than {MAX_SELECT} properties")
    for name in names:
        if not _NAME.match(name) or "/" in name:
            raise bad(f"$select: {name[:40]!r} is not a property name")
    return names


class _Budget:
    """How many relations one request's `$expand` may still name."""

    def __init__(self) -> None:
        self.left = MAX_EXPANDS

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise bad(f"$expand names more than {MAX_EXPANDS} relations")


def _expand(text: str, depth: int, budget: _Budget) -> tuple[Expand, ...]:
    items: list[Expand] = []
    for raw in _split(text, ","):
        item = raw.strip()
        nested = ""
        if "(" in item:
            if not item.endswith(")"):
                raise bad(f"$expand: cannot read {item[:80]!r}")
            item, nested = item[: item.index("(")].strip(), item[item.index("(") + 1 : -1]
        names = item.split("/")
        if len(names) + depth > MAX_EXPAND_DEPTH:
            raise bad(f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels")
        for name in names:
            if not re.fullmatch(r"[A-Za-z]{1,40}", name):
                raise bad(f"$expand: {name[:40]!r} is not a relation")
        budget.spend()
        inner = _options(_pairs(nested), depth + len(names), budget) if nested else Options()
        # `A/B(opts)` is `A($expand=B(opts))`.
        for name in reversed(names[1:]):
            budget.spend()
            inner = Options(expand=(Expand(name, inner),))
        items.append(Expand(names[0], inner))
    return tuple(items)


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for part in _split(text, ";"):
        name, eq, value = part.partition("=")
        if not eq:
            raise bad(f"expected $option=value inside $expand(...), not {part[:80]!r}")
        pairs.append((name.strip(), value))
    return pairs


def _options(pairs: list[tuple[str, str]], depth: int, budget: _Budget) -> Options:
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in NOT_IMPLEMENTED:
            raise unsupported(f"{name} is not supported by this service")
        if name not in KNOWN:
            raise bad(f"unknown query option {name[:40]!r}; known: {', '.join(sorted(KNOWN))}")
        if name in values:
            raise bad(f"{name} is given twice")
        if depth and name == "$resultFormat":
            raise bad("$resultFormat goes with the request, not inside $expand(...)")
        if len(value) > MAX_OPTION_LENGTH:
            raise bad(f"{name} is longer than {MAX_OPTION_LENGTH} characters")
        values[name] = value
    count = values.get("$count", "false")
    if count not in ("true", "false"):
        raise bad(f"$count must be true or false, not {count[:20]!r}")
    result_format = values.get("$resultFormat")
    if result_format not in (None, "dataArray", "default"):
        raise unsupported(f"$resultFormat={result_format[:40]} is not supported; use dataArray")
    filter_text = values.get("$filter")
    return Options(
        top=_integer("$top", values["$top"]) if "$top" in values else None,
        skip=_integer("$skip", values["$skip"]) if "$skip" in values else 0,
        count=count == "true",
        orderby=_orderby(values["$orderby"]) if "$orderby" in values else (),
        select=_select(values["$select"]) if "$select" in values else None,
        expand=_expand(values["$expand"], depth, budget) if "$expand" in values else (),
        filter=expression.parse(filter_text) if filter_text is not None else None,
        filter_text=filter_text,
        data_array=result_format == "dataArray",
        given=tuple(pairs),
    )


def parse_options(params: Mapping[str, str] | list[tuple[str, str]]) -> Options:
    """The request's options; parameters not starting with `$` are left alone.

    `$skiptoken` is this service's own paging token (from a nextLink), opaque to clients.
    """
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    token = None
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        if name == "$skiptoken":
            if len(value) > 200:
                raise bad("$skiptoken is not one this service gave")
            token = value
        elif name.startswith("$"):
            pairs.append((name, value))
    return replace(_options(pairs, 0, _Budget()), skiptoken=token)
