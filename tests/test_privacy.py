"""node.toml's `[privacy]` table (node.privacy): who may see a resident id in clear."""

from __future__ import annotations

import pytest

from node.errors import ConfigError
from node.privacy import PrivacyConfig


def test_no_table_shows_personal_data_to_no_one() -> None:
    """issue 9 §6: by default `--show-personal` is refused (the operator must opt in)."""
    assert PrivacyConfig.from_document({}).operator_may_show_personal is False
    allowed = PrivacyConfig.from_document({"privacy": {"operator_may_show_personal": True}})
    assert allowed.operator_may_show_personal is True


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"privacy": "yes"}, r"privacy must be a table \[privacy\]"),
        ({"privacy": {"operator_may_show_personal": "true"}}, "must be true or false"),
        ({"privacy": {"show_personal": True}}, "unknown key 'show_personal'"),
    ],
)
def test_a_wrong_table_names_the_file_and_key(document: dict[str, object], message: str) -> None:
    """issue 9 §6: a typo in [privacy] is a config error, never a silent default."""
    with pytest.raises(ConfigError, match=message) as caught:
        PrivacyConfig.from_document(document, source="/srv/node/node.toml")
    assert caught.value.message.startswith("/srv/node/node.toml: ")
