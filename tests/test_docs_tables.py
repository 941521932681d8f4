"""docs/schemes-and-crosswalks.md lists every scheme, crosswalk and field map shipped, and only
those, each with a test that exists and pins it (issue 11 Must show)."""

from __future__ import annotations

import collections
import pathlib
import re
import tomllib

from adapters.crosswalks import builtin_crosswalks
from adapters.fieldmaps import builtin_field_maps
from adapters.schemes import builtin_schemes

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "schemes-and-crosswalks.md"
_ROW = re.compile(r"^\| (?:\S+ \| )?`([^`]+)` \|.*\| `(test_[a-z_]+)(?:\[([^\]]*)\])?`")


def _rows(section: str) -> dict[str, tuple[str, str]]:
    """{table id: (test function, its parameter)} of one section of the page."""
    text = PAGE.read_text(encoding="utf-8").split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in text.splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3) or "")
    return rows


def _has_test(path: str, name: str) -> bool:
    return f"def {name}(" in (ROOT / "tests" / path).read_text(encoding="utf-8")


def test_every_shipped_scheme_is_listed_with_the_vector_that_pins_it() -> None:
    rows = _rows("Schemes")
    assert set(rows) == set(builtin_schemes())
    vectors = tomllib.loads((ROOT / "tests/vectors/schemes/vectors.toml").read_text("utf-8"))
    for scheme_id, (test, parameter) in rows.items():
        assert _has_test("adapters/test_schemes.py", test)
        assert parameter == scheme_id and scheme_id in vectors


def test_every_shipped_crosswalk_is_listed_with_the_cases_that_pin_it() -> None:
    rows = _rows("Crosswalks")
    assert set(rows) == {c.id for c in builtin_crosswalks().all()}
    cases = tomllib.loads((ROOT / "tests/vectors/crosswalks/vectors.toml").read_text("utf-8"))
    count = collections.Counter(case["crosswalk"] for case in cases["case"])
    page = PAGE.read_text(encoding="utf-8")
    for crosswalk_id, (test, parameter) in rows.items():
        assert _has_test("adapters/test_crosswalks.py", test)
        assert parameter == f"{crosswalk_id}:…" and count[crosswalk_id] > 0
        assert f"({count[crosswalk_id]}) |" in page.split(f"`{crosswalk_id}`", 1)[1].split("\n")[0]


def test_every_shipped_field_map_is_listed() -> None:
    rows = _rows("Field maps")
    shipped = {v for m in builtin_field_maps().values() for v in m.variants}
    assert set(rows) == shipped | {"penalty-classes.toml"}
    for test, _ in rows.values():
        assert _has_test("adapters/test_shuanggongshi.py", test)
