"""The committed ``schema.graphql`` is the schema: a change to one is a change to both.

Frontends generate types and review API changes from this file, so a change
to the schema that forgets the snapshot fails here, and the diff of the
snapshot in the same commit shows reviewers what clients will see.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meterql import cli
from meterql.schema import build_schema

SNAPSHOT = Path(__file__).resolve().parent.parent / "schema.graphql"
REFRESH = "meterql schema > schema.graphql"


def test_the_committed_snapshot_is_the_schema() -> None:
    assert SNAPSHOT.is_file(), f"schema.graphql is missing: run `{REFRESH}`"
    current = build_schema().as_str() + "\n"
    # Not a bare ==: pytest's diff of two long strings would hide which
    # field moved; naming the first differing line says it at once.
    if SNAPSHOT.read_text(encoding="utf-8") != current:
        committed, fresh = SNAPSHOT.read_text(encoding="utf-8").splitlines(), current.splitlines()
        for number, (old, new) in enumerate(zip(committed, fresh, strict=False), start=1):
            if old != new:
                where = f"line {number}: snapshot {old!r}, schema {new!r}"
                break
        else:
            where = f"snapshot has {len(committed)} lines, schema {len(fresh)}"
        pytest.fail(f"the schema changed without its snapshot ({where}): run `{REFRESH}`")


def test_meterql_schema_prints_the_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    # The refresh command named above must produce exactly the file.
    assert cli.main(["schema"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == SNAPSHOT.read_text(encoding="utf-8")


def test_the_snapshot_does_not_depend_on_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Limits and introspection are runtime guards, not part of the schema:
    # an operator's environment must not make the printed SDL differ.
    monkeypatch.setenv("METERQL_INTROSPECTION", "false")
    monkeypatch.setenv("METERQL_GRAPHQL_MAX_DEPTH", "3")
    assert cli.main(["schema"]) == 0
    assert capsys.readouterr().out == SNAPSHOT.read_text(encoding="utf-8")
