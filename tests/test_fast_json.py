"""The hot paths' JSON by orjson (``conversations.rows.json_from_db``, ``json_to_db``):
the same values as Django's JSONField reads and writes with ``json``, and the same refusals."""

from __future__ import annotations

import datetime
import json
import uuid

import pytest

from conversations.rows import json_from_db, json_to_db

VALUES = [
    {"1": {"text": "héllo ✓", "sender": {"id": str(uuid.uuid4())}, "n": 1.5, "none": None, "list": [1, True]}},
    {"big": 2**70, "small": -(2**63)},  # past 64 bits: json's turn
    [],
    "text",
    0,
]


@pytest.mark.parametrize("value", VALUES)
def test_reads_and_writes_as_json_does(value):
    text = json.dumps(value)
    assert json_from_db(text, None, None) == json.loads(text)
    assert json.loads(json_to_db(value)) == json.loads(text)


def test_keys_that_are_not_strings_are_written_as_json_writes_them():
    value = {1: "a", False: "b", None: "c", 2.5: "d"}
    assert json.loads(json_to_db(value)) == json.loads(json.dumps(value))


def test_what_json_refuses_is_refused():
    with pytest.raises(TypeError):
        json_to_db({"when": datetime.datetime.now(datetime.UTC)})


def test_what_neither_reads_comes_back_as_it_came_and_null_stays_none():
    assert json_from_db("not json", None, None) == "not json"
    assert json_from_db(None, None, None) is None
