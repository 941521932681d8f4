"""`creditnode ingest` of the government formats on a real node home: a 双公示 variant the
operator adds as a data file in the home's fieldmaps/ is read without a code change, a bad
file changes nothing (and names no person's id), licences are checked and counted."""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest
from click.testing import CliRunner, Result

from node.cli import main
from node.clock import SYSTEM, china_date
from node.home import NodeHome
from node.store import Store
from tests.federation_helpers import HUZHOU, init_home

VARIANT = """
id = "shuanggongshi-cf@hz-2019"
kind = "penalty"
title = "Huzhou's 2019 export: its own names for the national fields"

[fields]
subject_name = ["XDRMC"]
uscc = ["XDRDM"]
case_number = ["JDSWH"]
category = ["CFZL"]
fine = ["FKWY"]
decided_on = ["JDRQ"]
publicity_ends_on = ["GSJZRQ"]
authority = ["JDJG"]
"""


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def home(tmp_path: pathlib.Path) -> pathlib.Path:
    return init_home(tmp_path, HUZHOU, "湖州")


def _penalties(home: pathlib.Path) -> int:
    with Store.open(NodeHome(home).db_url()) as store:
        return len(store.penalties.in_force())


def test_a_variant_dropped_into_the_home_is_imported(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    today = china_date(SYSTEM.now())
    decided, ends = today - dt.timedelta(days=10), today + dt.timedelta(days=300)
    export = tmp_path / "hz-2019.csv"
    export.write_text(
        "XDRMC,XDRDM,JDSWH,CFZL,FKWY,JDRQ,GSJZRQ,JDJG\n"
        f"湖州华达新材料有限公司,91330502MA2B3C4D1U,湖市监罚1号,罚款,5,{decided},{ends},湖州市局\n"
        f"德清县王记五金店,92330521MA7K8L9M6H,湖市监罚2号,警告,,{decided},{ends},德清县局\n",
        encoding="utf-8",
    )
    args = ("ingest", "--format", "shuanggongshi-cf-csv", str(export), "--home", str(home))
    refused = _run(*args)
    assert refused.exit_code == 1 and "required column is missing" in refused.stderr

    (home / "fieldmaps").mkdir()
    (home / "fieldmaps" / "shuanggongshi-cf@hz-2019.toml").write_text(VARIANT, encoding="utf-8")
    imported = _run(*args)
    assert imported.exit_code == 0, imported.output
    assert "2 in force" in imported.stdout
    assert _penalties(home) == 2
    again = _run(*args)
    assert "2 unchanged" in again.stdout and _penalties(home) == 2


def test_a_bad_file_changes_nothing_and_names_no_resident_id(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    today = china_date(SYSTEM.now())
    export = tmp_path / "cf.csv"
    export.write_text(
        "CF_XDR_MC,CF_XDR_LB,CF_XDR_ZJLX,CF_XDR_ZJHM,CF_WSH,CF_CFLB,CF_JDRQ,CF_GSJZQ,CF_CFJG\n"
        f"沈建华,自然人,身份证,330522198503142034,罚1号,警告,{today},{today},湖州市公安局\n"
        f"沈建华,自然人,身份证,330522198503142035,罚2号,警告,{today},{today},湖州市公安局\n",
        encoding="utf-8",
    )
    result = _run("ingest", "--format", "shuanggongshi-cf-csv", str(export), "--home", str(home))
    assert result.exit_code == 1
    assert "row 2, CF_XDR_ZJHM" in result.stderr and "nothing imported" in result.stderr
    assert "33052219850314203" not in result.output
    assert _penalties(home) == 0


def test_licences_are_checked_and_counted_not_stored(
    home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    export = tmp_path / "xk.json"
    export.write_text(
        '[{"XK_XDR_MC": "湖州华达新材料有限公司", "XK_XDR_SHXYM": "91330502MA2B3C4D1U", '
        '"XK_WSH": "许1号", "XK_JDRQ": "2025-03-01", "XK_YXQZ": "2025-03-01", '
        '"XK_YXQZI": "长期", "XK_XKJG": "湖州市市场监督管理局"}]',
        encoding="utf-8",
    )
    result = _run("ingest", "--format", "shuanggongshi-xk-json", str(export), "--home", str(home))
    assert result.exit_code == 0, result.output
    assert "1 licences, all valid" in result.stdout


def test_adapters_lists_the_government_formats() -> None:
    listing = _run("adapters").stdout
    for name in ("shuanggongshi-cf-xml", "shuanggongshi-xk-csv", "serious-dishonesty-json"):
        assert name in listing
