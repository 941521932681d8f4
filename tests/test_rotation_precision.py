"""Regression (bug found by the federation test, 2026-11-29): key times were written to the
key manifest truncated to whole seconds, so after a rotation the old key's validity ended up
to a second before the rotation, and a result it had signed a moment earlier was refused."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

from node.home import NodeHome
from node.keys import NodeKeys, identity_json
from node.trust import member_from_identity
from tests.federation_helpers import init_home


def test_old_key_is_valid_up_to_the_rotation_instant(tmp_path: pathlib.Path) -> None:
    home = NodeHome(init_home(tmp_path, "cn-330500", "湖州"))
    keys = NodeKeys.open(home)
    old = keys.signing_keys()[0]
    # A rotation at .900 s, and a result the old key signed at .623 s, just before it.
    rotated_at = old.not_before.replace(microsecond=900_000) + dt.timedelta(seconds=60)
    signed_at = rotated_at.replace(microsecond=623_677)
    keys.rotate_signing_key(now=rotated_at)
    identity = json.loads(identity_json(NodeKeys.open(home).public_identity()))
    member = member_from_identity(identity, endpoint="127.0.0.1:7443")
    info = member.signing_key_info(old.keyid)
    assert info is not None and info.status == "verify-only"
    assert info.not_after == rotated_at
    assert info.valid_at(signed_at)
    assert not info.valid_at(rotated_at)
