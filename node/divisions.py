"""GB/T 2260 administrative division codes: the provinces, the cities of the first deployment's
zones (DESIGN.md §1) and Huzhou's districts and counties. A node id is `cn-` + one of these.
"""

from __future__ import annotations

from node.errors import InvalidIdentifier

PROVINCES: dict[str, str] = {
    "11": "北京市",
    "12": "天津市",
    "13": "河北省",
    "14": "山西省",
    "15": "内蒙古自治区",
    "21": "辽宁省",
    "22": "吉林省",
    "23": "黑龙江省",
    "31": "上海市",
    "32": "江苏省",
    "33": "浙江省",
    "34": "安徽省",
    "35": "福建省",
    "36": "江西省",
    "37": "山东省",
    "41": "河南省",
    "42": "湖北省",
    "43": "湖南省",
    "44": "广东省",
    "45": "广西壮族自治区",
    "46": "海南省",
    "50": "重庆市",
    "51": "四川省",
    "52": "贵州省",
    "53": "云南省",
    "54": "西藏自治区",
    "61": "陕西省",
    "62": "甘肃省",
    "63": "青海省",
    "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区",
}

DIVISIONS: dict[str, str] = {
    # Shanghai
    "310000": "上海市",
    "310101": "黄浦区",
    "310104": "徐汇区",
    "310115": "浦东新区",
    # Jiangsu
    "320000": "江苏省",
    "320100": "南京市",
    "320200": "无锡市",
    "320400": "常州市",
    "320500": "苏州市",
    "320600": "南通市",
    "321000": "扬州市",
    # Zhejiang: every prefecture-level city
    "330000": "浙江省",
    "330100": "杭州市",
    "330200": "宁波市",
    "330300": "温州市",
    "330400": "嘉兴市",
    "330500": "湖州市",
    "330600": "绍兴市",
    "330700": "金华市",
    "330800": "衢州市",
    "330900": "舟山市",
    "331000": "台州市",
    "331100": "丽水市",
    # Huzhou's districts and counties
    "330502": "吴兴区",
    "330503": "南浔区",
    "330521": "德清县",
    "330522": "长兴县",
    "330523": "安吉县",
    # Hangzhou districts seen in registers
    "330102": "上城区",
    "330105": "拱墅区",
    "330106": "西湖区",
    "330108": "滨江区",
    # Anhui
    "340000": "安徽省",
    "340100": "合肥市",
    "340200": "芜湖市",
    "341000": "黄山市",
}


def name_of(code: str) -> str:
    """The division's name, or raise InvalidIdentifier when the table does not know it."""
    try:
        return DIVISIONS[code]
    except KeyError:
        raise InvalidIdentifier(f"division code {code} is not in the GB/T 2260 table") from None


def is_plausible_division(code: str) -> bool:
    """Six digits under a known province (registers hold codes of every county in China)."""
    return len(code) == 6 and code.isdigit() and code[:2] in PROVINCES


def node_id_for(code: str) -> str:
    name_of(code)
    return f"cn-{code}"


# Longest first: 自治州 before 州-less matches, 自治区 before 区.
ADMIN_SUFFIXES = ("自治州", "自治县", "自治区", "地区", "市", "区", "县", "省", "盟", "旗")


def is_name_of(name: str, code: str) -> bool:
    """Whether `name` is the division's name, in full (湖州市) or without its administrative
    suffix (湖州); False for a code the table does not know."""
    full = DIVISIONS.get(code)
    if full is None:
        return False
    short = next(
        (full[: -len(s)] for s in ADMIN_SUFFIXES if full.endswith(s) and len(full) > len(s)), full
    )
    return name.strip() in (full, short)
