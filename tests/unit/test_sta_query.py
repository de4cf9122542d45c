"""SensorThings request parsing: paths, query options and `$filter` (OGC 18-088 §9.2, §9.3).

Pure: no store, no server. What is checked is what a client notices: which requests are read
and how, which are refused, and with which status (400: cannot be read or over a limit; 501:
valid SensorThings this service does not do), and that no text at all makes the parsers fail
in another way than those refusals.
"""

from __future__ import annotations

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from api.sta import expression
from api.sta.errors import StaError
from api.sta.expression import Compare, Const, Instant, Logical, Not, Path, parse
from api.sta.model import Segment, parse_path, quote
from api.sta.observations import Cursor
from api.sta.options import Expand, Options, parse_options
from core.timeutil import parse_instant_ns


def status(call: object, *args: object) -> int:
    with pytest.raises(StaError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.status


# -- paths (§9.2) ---------------------------------------------------------------------------------


def test_9_2_paths_take_quoted_string_ids_and_bare_integers() -> None:
    assert parse_path("Things('sf-rlv-01')/Datastreams") == [
        Segment("Things", "sf-rlv-01"),
        Segment("Datastreams"),
    ]
    assert parse_path("Datastreams('sf-rlv-01:level')/Observations/$ref")[-1] == Segment("$ref")
    assert parse_path("Things(42)") == [Segment("Things", "42")]
    assert parse_path("Things('it''s')") == [Segment("Things", "it's")]
    assert quote("it's") == "'it''s'"
    assert parse_path("") == []


@pytest.mark.parametrize(
    "path", ["Things('x", "Things(x)", "Things('x'))", "Things(-1)", "Thi ngs", "Things('a')b"]
)
def test_badly_quoted_ids_are_400(path: str) -> None:
    assert status(parse_path, path) == 400


# -- $filter (§9.3.3.5) ---------------------------------------------------------------------------


def test_9_3_3_5_precedence_not_and_or_and_parentheses() -> None:
    tree = parse("result gt 5 or not result lt 1 and phenomenonTime lt 2026-11-20T00:00:00Z")
    instant = Instant(parse_instant_ns("2026-11-20T00:00:00Z"))
    assert tree == Logical(
        "or",
        Compare("gt", Path(("result",)), Const(5)),
        Logical(
            "and",
            Not(Compare("lt", Path(("result",)), Const(1))),
            Compare("lt", Path(("phenomenonTime",)), Const(instant)),
        ),
    )
    grouped = parse("(result gt 5 or result lt 1) and properties/pilot eq 'it''s'")
    assert isinstance(grouped, Logical) and grouped.op == "and"
    assert grouped.right == Compare("eq", Path(("properties", "pilot")), Const("it's"))


def test_literals_numbers_booleans_null_and_instants_with_offsets() -> None:
    assert parse("result eq -2.5e1") == Compare("eq", Path(("result",)), Const(-25.0))
    assert parse("x eq true") == Compare("eq", Path(("x",)), Const(True))
    assert parse("x ne null") == Compare("ne", Path(("x",)), Const(None))
    local = parse("phenomenonTime ge 2026-11-20T09:00:00.5-03:00")
    assert local == Compare(
        "ge",
        Path(("phenomenonTime",)),
        Const(Instant(parse_instant_ns("2026-11-20T12:00:00.5Z"))),
    )


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("name eq", 400),
        ("eq 5", 400),
        ("(result gt 5", 400),
        ("result gt 5)", 400),
        ("result gt 5 result", 400),
        ("name eq 'open", 400),
        ("result § 5", 400),
        ("", 400),
        ("(" * 40 + "result gt 1" + ")" * 40, 400),
        ("result gt 1 and " * 60 + "result gt 1", 400),
        ("x" * 2000, 400),
        ("substringof('river', name)", 501),
        ("geo.intersects(location, geography'POINT(1 2)')", 501),
        ("result add 1 gt 5", 501),
        ("name in ('a', 'b')", 501),
    ],
)
def test_bad_filters_are_400_and_unsupported_ones_501(text: str, code: int) -> None:
    assert status(parse, text) == code


def test_time_bounds_are_what_the_store_is_asked_for() -> None:
    t1 = parse_instant_ns("2026-11-01T00:00:00Z")
    t2 = parse_instant_ns("2026-11-02T00:00:00Z")
    a, b = "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"
    bounds = expression.time_bounds
    assert bounds(parse(f"phenomenonTime ge {a} and phenomenonTime lt {b}")) == (t1, t2)
    assert bounds(parse(f"phenomenonTime gt {a} and result gt 3")) == (t1 + 1, None)
    assert bounds(parse(f"{b} ge resultTime")) == (None, t2 + 1)
    assert bounds(parse(f"phenomenonTime lt {a} or phenomenonTime ge {b}")) == (None, None)
    assert bounds(parse(f"phenomenonTime eq {a} or phenomenonTime eq {b}")) == (t1, t2 + 1)
    assert bounds(parse(f"not phenomenonTime lt {a}")) == (None, None)


def test_observation_filters_are_answered_on_whole_arrays() -> None:
    ts = np.arange(6, dtype=np.int64) * 10
    value = np.asarray([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    tree = parse("not (result ge 2) or result eq 4")
    assert expression.mask(tree, ts, value).tolist() == [True, True, False, False, True, False]
    assert status(expression.check_observation_filter, parse("name eq 'x'")) == 400
    assert status(expression.check_observation_filter, parse("result gt 'x'")) == 400
    assert status(expression.check_observation_filter, parse("Datastream/id eq 'x'")) == 501


# -- the other options (§9.3.2, §9.3.3) -----------------------------------------------------------


def test_9_3_2_1_expand_nested_options_and_the_path_form() -> None:
    options = parse_options({"$expand": "Datastreams($top=2;$expand=ObservedProperty),Locations"})
    (datastreams, locations) = options.expand
    assert datastreams.name == "Datastreams" and datastreams.options.top == 2
    assert datastreams.options.expand == (Expand("ObservedProperty", Options()),)
    assert locations == Expand("Locations", Options())
    path_form = parse_options({"$expand": "Datastreams/ObservedProperty"})
    assert path_form.expand[0].options.expand[0].name == "ObservedProperty"
    filtered = parse_options({"$expand": "Observations($filter=result gt 1 and result lt 3)"})
    assert filtered.expand[0].options.filter_text == "result gt 1 and result lt 3"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"$expand": "Datastreams/Observations/Datastream"}, 400),
        ({"$expand": "Datastreams($expand=Observations($expand=Datastream))"}, 400),
        ({"$expand": ",".join(["Locations"] * 13)}, 400),
        ({"$expand": "Datastreams($top=2"}, 400),
        ({"$expand": "Datastreams($bogus=2)"}, 400),
        ({"$top": "-1"}, 400),
        ({"$top": "1e3"}, 400),
        ({"$top": "99999999999"}, 400),
        ({"$skip": "x"}, 400),
        ({"$count": "yes"}, 400),
        ({"$orderby": "name sideways"}, 400),
        ({"$orderby": "length(name)"}, 501),
        ({"$select": "a b"}, 400),
        ({"$search": "river"}, 501),
        ({"$levels": "2"}, 501),
        ({"$resultFormat": "GeoJSON"}, 501),
        ({"$unknown": "1"}, 400),
        ({"$skiptoken": "x" * 300}, 400),
        ({"$select": "x" * 3000}, 400),
    ],
)
def test_bad_options_are_refused(params: dict[str, str], code: int) -> None:
    assert status(parse_options, params) == code


def test_an_option_given_twice_is_400() -> None:
    assert status(parse_options, [("$top", "1"), ("$top", "2")]) == 400


def test_options_keep_what_was_given_for_next_links() -> None:
    options = parse_options({"$top": "5", "$orderby": "phenomenonTime DESC", "other": "kept out"})
    assert options.top == 5
    assert options.orderby[0].descending
    assert options.given == (("$top", "5"), ("$orderby", "phenomenonTime DESC"))


def test_a_cursor_token_round_trips_and_garbage_is_400() -> None:
    cursor = Cursor(3, 1_793_491_200_000_000_000)
    assert Cursor.parse(cursor.token()) == cursor
    assert Cursor.parse("0~") == Cursor(0, None)
    for garbage in ("", "x~1", "1", "1~x", "-1~5", "1~99999999999999999999999"):
        assert status(Cursor.parse, garbage) == 400


# -- no text breaks the parsers -------------------------------------------------------------------

#: Text made of the pieces OData requests are made of, so that most of it almost parses.
ODATA = st.lists(
    st.sampled_from(
        [
            *"()',;/$=: -.0123456789abeglnoqrtzTZ",
            "eq ",
            "and ",
            "or ",
            "not ",
            "result ",
            "phenomenonTime ",
            "2026-11-20T00:00:00Z",
            "Datastreams",
            "$top=",
            "$expand=",
            "$filter=",
            "''",
        ]
    ),
    max_size=40,
).map("".join)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(text=ODATA | st.text(max_size=60))
def test_any_filter_text_is_read_or_refused_as_400_or_501(text: str) -> None:
    try:
        tree = parse(text)
    except StaError as exc:
        assert exc.status in (400, 501)
        return
    try:  # and whatever was read, the observation side answers or refuses it
        expression.mask(tree, np.zeros(2, np.int64), np.zeros(2))
        expression.time_bounds(tree)
    except StaError as exc:
        assert exc.status in (400, 501)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    name=st.sampled_from(["$expand", "$orderby", "$select", "$top", "$filter", "$count"]),
    text=ODATA,
)
def test_any_option_text_is_read_or_refused_as_400_or_501(name: str, text: str) -> None:
    try:
        parse_options({name: text})
    except StaError as exc:
        assert exc.status in (400, 501)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(path=ODATA | st.text(max_size=60))
def test_any_path_is_read_or_refused_as_400(path: str) -> None:
    try:
        parse_path(path)
    except StaError as exc:
        assert exc.status == 400


def test_only_ascii_digits_are_numbers() -> None:
    """'²' is a digit to `str.isdigit` and not to `int()`: a 400 (or a 404 for a key), never
    a 500; an unquoted key of any length is a key, which no entity has (404, not 400)."""
    for name in ("$top", "$skip"):
        for text in ("²", "¹0", "\u0661", " 5", "5_0", "+5", "-1"):
            assert status(parse_options, {name: text}) == 400, (name, text)
    assert parse_path("Things(" + "9" * 40 + ")") == [Segment("Things", "9" * 40)]
    assert status(parse_path, "Things(²)") == 400
    for token in ("²~", "0~²", "0~--5", "0~ 5", "0~5_0"):
        assert status(Cursor.parse, token) == 400, token
