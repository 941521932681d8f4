"""GetNodeInfo.schemes (issue 11 §2): a node lists the schemes it issues results under, those of
its province and city among the shipped tables (the servicer returns node_info as it is)."""

from __future__ import annotations

import pathlib

from devtools.federation import build
from node.home import NodeHome
from node.runtime import NodeRuntime

HUZHOU, SHANGHAI, HEFEI = "cn-330500", "cn-310000", "cn-340100"


def test_node_info_lists_the_schemes_each_node_issues(tmp_path: pathlib.Path) -> None:
    fed = build(
        tmp_path,
        {HUZHOU: "湖州", SHANGHAI: "上海", HEFEI: "合肥"},
        {"yrd": (HUZHOU, SHANGHAI, HEFEI)},
        subjects=5,
    )
    nodes = {n: NodeRuntime(NodeHome(fed.home(n))) for n in (HUZHOU, SHANGHAI, HEFEI)}
    assert list(nodes[HUZHOU].node_info().schemes) == [
        "hz-enterprise-credit@2021",
        "zj-public-credit@2023",
    ]
    assert list(nodes[SHANGHAI].node_info().schemes) == ["sh-public-credit@2022"]
    assert list(nodes[HEFEI].node_info().schemes) == ["ah-public-credit@2022"]
