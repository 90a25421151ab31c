"""cdc.jsontext: orjson's speed with the standard library's values and errors."""

from __future__ import annotations

import json
import math

import pytest

from cdc import jsontext
from cdc.domain.ids import to_json_value


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":1,"b":[1.5,-0.0,null,true],"c":"\\u00e9t\\u00e9","d":{"e":"x"}}',
        b'{"big":9223372036854775807,"small":-9223372036854775808}',
        b'{"f":1e300,"g":5e-324}',
    ],
)
def test_loads_gives_what_the_standard_library_gives(text: bytes) -> None:
    assert jsontext.loads(text) == json.loads(text)


@pytest.mark.parametrize("text", [b'{"a":NaN}', b'{"a":Infinity,"b":-Infinity}', b'{"a":1e400}', b'"\\ud800"'])
def test_what_orjson_refuses_is_parsed_by_the_standard_library(text: bytes) -> None:
    got, want = jsontext.loads(text), json.loads(text)
    assert repr(got) == repr(want)  # NaN != NaN: compare the spelling


@pytest.mark.parametrize("text", [b"\xff\xfe", b"{", b"", b'{"a":1,}'])
def test_bad_json_raises_the_standard_librarys_error(text: bytes) -> None:
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)) as caught:
        jsontext.loads(text)
    with pytest.raises(type(caught.value)):
        json.loads(text)


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, None, 2.5], "c": {"z": "é", "y": "\u2603"}},
        to_json_value({"nan": math.nan, "inf": math.inf, "ninf": -math.inf}),
        {"big": 2**70, "n": 1},  # beyond orjson's 64 bits: the standard library writes it
        {"s": "\ud800"},  # a lone surrogate: the standard library escapes it
        [],
    ],
)
def test_dumps_clean_is_the_same_json_value_with_sorted_keys(value: object) -> None:
    text = jsontext.dumps_clean(value)
    assert json.loads(text) == json.loads(json.dumps(value))
    if isinstance(value, dict):
        assert list(json.loads(text)) == sorted(value)  # sorted, as the stored payloads always were


def test_dumps_clean_unsorted_keeps_the_order() -> None:
    assert jsontext.dumps_clean({"b": 1, "a": 2}, sort_keys=False) == b'{"b":1,"a":2}'


def test_dumps_clean_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError):
        jsontext.dumps_clean({"x": object()})
