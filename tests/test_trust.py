"""Trust lists: construction checks, coordinator signatures, rollback/expiry refusals, the
last-good-list store, key rotation statuses, and list files picked up without restart."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import pathlib

import pytest

from node import signing, trust, trust_files, wire
from node.errors import (
    BadSignature,
    ConfigError,
    CreditNodeError,
    ExpiredTrustList,
    InvalidInput,
    RolledBackTrustList,
    TrustListZoneMismatch,
    UnsignedEnvelope,
    UntrustedKey,
)
from tests.trust_lists import DAY, T0, key_info, make_list, make_member, tls_cert_der


@pytest.fixture(scope="module")
def coordinator() -> signing.Ed25519Signer:
    return signing.Ed25519Signer.generate()


@pytest.fixture(scope="module")
def huzhou_key() -> signing.Ed25519Signer:
    return signing.Ed25519Signer.generate()


@pytest.fixture(scope="module")
def huzhou(huzhou_key: signing.Ed25519Signer) -> trust.Member:
    return make_member("cn-330500", key_info(huzhou_key))


@pytest.fixture(scope="module")
def jiaxing() -> trust.Member:
    return make_member("cn-330400", key_info(signing.EcdsaP256Signer.generate()))


@pytest.fixture
def store(coordinator: signing.Ed25519Signer) -> trust.TrustStore:
    return trust.TrustStore({"hjjw": coordinator.verification_key()})


# --- construction -------------------------------------------------------------------------


def test_trust_list_round_trips_through_its_signed_payload(
    huzhou: trust.Member, jiaxing: trust.Member
) -> None:
    tl = make_list(3, huzhou, jiaxing)
    assert wire.trust_list_from_bytes(wire.trust_list_bytes(tl)) == tl
    assert trust.member_from_json(trust.member_to_json(jiaxing)) == jiaxing


def test_member_rejects_a_fingerprint_that_is_not_its_certificate(huzhou: trust.Member) -> None:
    with pytest.raises(InvalidInput, match="is not the SHA-256 of its certificate"):
        dataclasses.replace(huzhou, tls_cert_sha256="00" * 32)


def test_member_accepts_a_certificate_naming_it_only_in_the_uri_san() -> None:
    member = make_member("cn-330700", cert=tls_cert_der("cn-330700", uri_only=True))
    assert member.node_id == "cn-330700"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"node_id": "330500"}, "cn-330500"),
        ({"division_code": "330400"}, "division code must be 330500"),
        ({"endpoint": "no-port.example.cn"}, "host:port"),
        ({"endpoint": "h:99999"}, "host:port"),
        ({"roles": ("Node!",)}, "lower-case slug"),
        ({"name": " "}, "name must not be empty"),
        ({"tls_cert_der": b"not a cert"}, "SHA-256"),
    ],
)
def test_member_checks_its_fields(
    huzhou: trust.Member, change: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        dataclasses.replace(huzhou, **change)  # type: ignore[arg-type]


def test_member_certificate_must_name_the_member() -> None:
    der = tls_cert_der("cn-330400")
    with pytest.raises(InvalidInput, match="names \\['cn-330400'\\], not cn-330500"):
        make_member("cn-330500", cert=der)


def test_ipv6_endpoint_is_accepted() -> None:
    assert make_member("cn-330300", endpoint="[2001:db8::1]:7443").endpoint.endswith(":7443")


def test_public_key_keyid_must_be_the_sha256_of_its_spki(huzhou_key: signing.Signer) -> None:
    with pytest.raises(InvalidInput, match="is not the SHA-256 of its SPKI"):
        trust.PublicKeyInfo("ab" * 32, signing.ED25519, huzhou_key.spki_der, T0)


@pytest.mark.parametrize(
    ("status", "not_after", "message"),
    [
        ("retired", None, "status must be one of active, verify-only, revoked"),
        ("active", T0 - 20 * DAY, "is not after not_before"),
    ],
)
def test_public_key_checks_status_and_window(
    huzhou_key: signing.Signer, status: str, not_after: dt.datetime | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        key_info(huzhou_key, status, not_after=not_after)


def test_trust_list_refuses_duplicate_members_certificates_and_keys(
    huzhou: trust.Member, huzhou_key: signing.Signer
) -> None:
    with pytest.raises(InvalidInput, match="node id cn-330500 appears in more than one"):
        make_list(1, huzhou, huzhou)
    other = make_member("cn-330300", key_info(huzhou_key))
    with pytest.raises(InvalidInput, match=r"signing key .* appears in more than one"):
        make_list(1, huzhou, other)


@pytest.mark.parametrize(
    ("zone", "version", "valid", "message"),
    [
        ("HJJW", 1, 30 * DAY, "lower-case slug"),
        ("hjjw", 0, 30 * DAY, "version starts at 1"),
        ("hjjw", 1, -DAY, "is not after issued_at"),
    ],
)
def test_trust_list_checks_its_header(
    zone: str, version: int, valid: dt.timedelta, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        make_list(version, zone=zone, valid=valid)


# --- opening a signed list ----------------------------------------------------------------


def test_signed_list_opens_with_the_pinned_coordinator_key(
    coordinator: signing.Ed25519Signer, huzhou: trust.Member
) -> None:
    tl = make_list(1, huzhou)
    env = trust.sign_trust_list(tl, coordinator)
    assert env.payload_type == signing.PAYLOAD_TRUST_LIST
    opened = trust.open_trust_list(
        env, coordinator.verification_key(), now=T0 + DAY, held_version=None, zone="hjjw"
    )
    assert opened == tl


def _tampered(env: signing.Envelope) -> signing.Envelope:
    # Raise the version byte (field 2, right after the zone "hjjw"): still a valid list.
    payload = bytearray(env.payload)
    assert payload[:7] == b"\n\x04hjjw\x10"
    payload[7] = 0x09
    return dataclasses.replace(env, payload=bytes(payload))


@pytest.mark.parametrize(
    ("make_envelope", "error", "message"),
    [
        (lambda env, other: dataclasses.replace(env, signatures=()), UnsignedEnvelope, "no sig"),
        (
            lambda env, other: trust.sign_trust_list(
                wire.trust_list_from_bytes(env.payload), other
            ),
            UntrustedKey,
            "no signature is by a trusted key",
        ),
        (lambda env, other: _tampered(env), BadSignature, "does not verify"),
        (
            lambda env, other: dataclasses.replace(env, payload_type=signing.PAYLOAD_CREDIT_RESULT),
            BadSignature,
            "payload type",
        ),
    ],
    ids=["unsigned", "other-key", "tampered", "wrong-type"],
)
def test_badly_signed_lists_are_refused_and_the_last_good_list_kept(
    store: trust.TrustStore,
    coordinator: signing.Ed25519Signer,
    huzhou: trust.Member,
    jiaxing: trust.Member,
    make_envelope: object,
    error: type[Exception],
    message: str,
) -> None:
    good = trust.sign_trust_list(make_list(1, huzhou), coordinator)
    assert store.offer("hjjw", good.to_json(), T0)
    newer = trust.sign_trust_list(make_list(2, huzhou, jiaxing), coordinator)
    bad = make_envelope(newer, signing.Ed25519Signer.generate())  # type: ignore[operator]
    with pytest.raises(error, match=message):
        store.offer("hjjw", bad, T0)
    held = store.trust_list("hjjw")
    assert held is not None and held.version == 1
    assert store.member("hjjw", "cn-330400") is None


def test_expired_list_is_refused_saying_when_it_expired(
    store: trust.TrustStore, coordinator: signing.Ed25519Signer, huzhou: trust.Member
) -> None:
    store.offer("hjjw", trust.sign_trust_list(make_list(1, huzhou), coordinator), T0)
    stale = trust.sign_trust_list(make_list(2, huzhou, valid=DAY), coordinator)
    with pytest.raises(ExpiredTrustList, match="version 2 expired at 2026-05-02T00:00:00Z"):
        store.offer("hjjw", stale, T0 + 3 * DAY)
    assert store.trust_list("hjjw").version == 1  # type: ignore[union-attr]


def test_older_list_offered_after_a_newer_one_is_refused_as_rollback(
    store: trust.TrustStore,
    coordinator: signing.Ed25519Signer,
    huzhou: trust.Member,
    jiaxing: trust.Member,
) -> None:
    v4 = trust.sign_trust_list(make_list(4, huzhou, jiaxing), coordinator)
    v5 = trust.sign_trust_list(make_list(5, huzhou), coordinator)
    assert store.offer("hjjw", v5, T0)
    with pytest.raises(RolledBackTrustList, match="version 4, but version 5 was already accepted"):
        store.offer("hjjw", v4, T0)
    # The same list again is no change; the same version with other content is a rollback.
    assert store.offer("hjjw", v5.to_json(), T0) is False
    v5_other = trust.sign_trust_list(make_list(5, huzhou, jiaxing), coordinator)
    with pytest.raises(RolledBackTrustList, match="with different content"):
        store.offer("hjjw", v5_other, T0)
    assert store.member("hjjw", "cn-330400") is None


def test_list_signed_for_another_zone_is_refused(
    coordinator: signing.Ed25519Signer, huzhou: trust.Member
) -> None:
    # One coordinator key pinned for two zones: a hyzt list must not pass as hjjw's.
    store = trust.TrustStore(
        {"hjjw": coordinator.verification_key(), "hyzt": coordinator.verification_key()}
    )
    env = trust.sign_trust_list(make_list(1, huzhou, zone="hyzt"), coordinator)
    with pytest.raises(TrustListZoneMismatch, match="for zone 'hyzt', offered as zone 'hjjw'"):
        store.offer("hjjw", env, T0)
    assert store.offer("hyzt", env, T0)
    assert store.zones() == ["hyzt"]


def test_offer_for_a_zone_without_a_pinned_key_is_a_config_error(
    store: trust.TrustStore, coordinator: signing.Ed25519Signer, huzhou: trust.Member
) -> None:
    env = trust.sign_trust_list(make_list(1, huzhou, zone="yrd"), coordinator)
    with pytest.raises(ConfigError, match=r"add \[trust.yrd\] to node.toml"):
        store.offer("yrd", env, T0)


# --- version floors and expiry (issue 9 §5) -----------------------------------------------


def _floor(env: signing.Envelope) -> trust.VersionFloor:
    version = wire.trust_list_from_bytes(env.payload).version
    return trust.VersionFloor(version, hashlib.sha256(env.payload).hexdigest())


def test_recorded_floor_refuses_an_older_list_in_a_fresh_store_as_at_run_time(
    coordinator: signing.Ed25519Signer, huzhou: trust.Member, jiaxing: trust.Member
) -> None:
    """issue 9 §5: rollback protection survives restarts. A store made with the floor
    recorded before (v4, which removed Jiaxing) refuses v3 although it holds no list yet."""
    v3 = trust.sign_trust_list(make_list(3, huzhou, jiaxing), coordinator)
    v4 = trust.sign_trust_list(make_list(4, huzhou), coordinator)
    restarted = trust.TrustStore({"hjjw": coordinator.verification_key()}, {"hjjw": _floor(v4)})
    with pytest.raises(RolledBackTrustList, match="version 3, but version 4 was already accepted"):
        restarted.offer("hjjw", v3, T0)
    other_v4 = trust.sign_trust_list(make_list(4, huzhou, jiaxing), coordinator)
    with pytest.raises(RolledBackTrustList, match="with different content"):
        restarted.offer("hjjw", other_v4, T0)
    assert restarted.zones() == [] and restarted.member("hjjw", "cn-330400") is None
    assert restarted.offer("hjjw", v4, T0)
    v5 = trust.sign_trust_list(make_list(5, huzhou, jiaxing), coordinator)
    assert restarted.offer("hjjw", v5, T0)
    assert restarted.floor("hjjw") == _floor(v5)


def test_list_stops_being_in_force_at_its_expiry_instant(
    store: trust.TrustStore, coordinator: signing.Ed25519Signer, huzhou: trust.Member
) -> None:
    """issue 9 §5: a list that expires while in force stops granting at its expiry."""
    store.offer("hjjw", trust.sign_trust_list(make_list(1, huzhou, valid=DAY), coordinator), T0)
    just_before = T0 + DAY - dt.timedelta(microseconds=1)
    assert store.zones_in_force(just_before) == ["hjjw"]
    assert store.expired_count(just_before) == 0
    assert store.zones_in_force(T0 + DAY) == []
    assert store.expired_zones(T0 + DAY) == ["hjjw"]
    assert store.expired_count(T0 + DAY) == 1
    # Still held: its members authenticate, and a newer list replaces it as usual.
    assert store.member_by_cert_sha256(huzhou.tls_cert_sha256) == [("hjjw", huzhou)]
    assert store.offer("hjjw", trust.sign_trust_list(make_list(2, huzhou), coordinator), T0 + DAY)
    assert store.zones_in_force(T0 + DAY) == ["hjjw"]


def test_after_a_restart_the_expired_list_in_force_before_is_held_and_any_other_refused(
    coordinator: signing.Ed25519Signer, huzhou: trust.Member
) -> None:
    """issue 9 §5: at start-up an expired list is reported, not silently dropped. The list
    the floor names is held again (expired: reported, granting nothing); an expired list
    never accepted here is still refused, newer or not."""
    v1 = trust.sign_trust_list(make_list(1, huzhou, valid=DAY), coordinator)
    v2 = trust.sign_trust_list(make_list(2, huzhou, valid=DAY), coordinator)
    later = T0 + 3 * DAY
    restarted = trust.TrustStore({"hjjw": coordinator.verification_key()}, {"hjjw": _floor(v1)})
    with pytest.raises(ExpiredTrustList):
        restarted.offer("hjjw", v2, later)
    assert restarted.offer("hjjw", v1, later)
    assert restarted.expired_zones(later) == ["hjjw"] and restarted.zones_in_force(later) == []
    fresh = trust.TrustStore({"hjjw": coordinator.verification_key()})
    with pytest.raises(ExpiredTrustList):
        fresh.offer("hjjw", v1, later)


# --- lookups ------------------------------------------------------------------------------


def test_removed_member_is_no_longer_found_by_certificate_after_the_new_list(
    store: trust.TrustStore,
    coordinator: signing.Ed25519Signer,
    huzhou: trust.Member,
    jiaxing: trust.Member,
) -> None:
    store.offer("hjjw", trust.sign_trust_list(make_list(1, huzhou, jiaxing), coordinator), T0)
    fp = jiaxing.tls_cert_sha256
    assert store.member_by_cert_sha256(fp.upper()) == [("hjjw", jiaxing)]
    assert jiaxing.tls_cert_pem in store.anchors_pem()
    store.offer("hjjw", trust.sign_trust_list(make_list(2, huzhou), coordinator), T0)
    assert store.member_by_cert_sha256(fp) == []
    assert jiaxing.tls_cert_pem not in store.anchors_pem()
    assert store.anchors_pem() == huzhou.tls_cert_pem


def test_member_in_two_zones_is_found_in_both(
    coordinator: signing.Ed25519Signer, huzhou: trust.Member
) -> None:
    store = trust.TrustStore(
        {"hjjw": coordinator.verification_key(), "hyzt": coordinator.verification_key()}
    )
    for zone in ("hjjw", "hyzt"):
        store.offer(zone, trust.sign_trust_list(make_list(1, huzhou, zone=zone), coordinator), T0)
    assert store.member_by_cert_sha256(huzhou.tls_cert_sha256) == [
        ("hjjw", huzhou),
        ("hyzt", huzhou),
    ]
    assert store.anchors_pem().count(b"BEGIN CERTIFICATE") == 1


def test_key_rotation_old_results_verify_with_a_verify_only_key_and_never_with_a_revoked_one(
    store: trust.TrustStore, coordinator: signing.Ed25519Signer
) -> None:
    old, new = signing.Ed25519Signer.generate(), signing.Ed25519Signer.generate()
    rotated_at = T0 - DAY
    cert = tls_cert_der("cn-330500")
    message = b"a credit result signed before rotation"
    sig = old.sign(message)
    signed_at = T0 - 3 * DAY

    before = make_member("cn-330500", key_info(old), cert=cert)
    store.offer("hjjw", trust.sign_trust_list(make_list(1, before), coordinator), T0)
    assert store.signing_key("cn-330500", old.keyid, signed_at).verify(message, sig)

    rotated = make_member(
        "cn-330500",
        key_info(old, trust.VERIFY_ONLY, not_after=rotated_at),
        key_info(new, not_before=rotated_at),
        cert=cert,
    )
    store.offer("hjjw", trust.sign_trust_list(make_list(2, rotated), coordinator), T0)
    # The result signed before rotation still verifies ...
    assert store.signing_key("cn-330500", old.keyid, signed_at, zone="hjjw").verify(message, sig)
    # ... but the verify-only key vouches for nothing signed after the rotation,
    with pytest.raises(UntrustedKey, match=r"\(verify-only\) is valid from .* not at"):
        store.signing_key("cn-330500", old.keyid, T0)
    # and the new key does not vouch for the past.
    with pytest.raises(UntrustedKey, match="not at"):
        store.signing_key("cn-330500", new.keyid, signed_at)
    assert store.signing_key("cn-330500", new.keyid, T0).keyid == new.keyid

    revoked = make_member(
        "cn-330500",
        key_info(old, trust.REVOKED, not_after=rotated_at),
        key_info(new, not_before=rotated_at),
        cert=cert,
    )
    store.offer("hjjw", trust.sign_trust_list(make_list(3, revoked), coordinator), T0)
    with pytest.raises(UntrustedKey, match=r"revoked in the trust list of zone hjjw .*version 3"):
        store.signing_key("cn-330500", old.keyid, signed_at)


def test_unknown_signer_or_key_is_untrusted(
    store: trust.TrustStore, coordinator: signing.Ed25519Signer, huzhou: trust.Member
) -> None:
    store.offer("hjjw", trust.sign_trust_list(make_list(1, huzhou), coordinator), T0)
    with pytest.raises(UntrustedKey, match="cn-330700 has no signing key"):
        store.signing_key("cn-330700", huzhou.signing_keys[0].keyid, T0)
    with pytest.raises(UntrustedKey, match="cn-330500 has no signing key ffff"):
        store.signing_key("cn-330500", "ffff", T0)


# --- pinning ------------------------------------------------------------------------------


def test_coordinator_key_is_pinned_from_spki_or_pem_file(
    tmp_path: pathlib.Path, coordinator: signing.Ed25519Signer
) -> None:
    vk = coordinator.verification_key()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "hyzt.pub.pem").write_bytes(trust_files.public_key_pem(vk))
    keys = trust_files.coordinator_keys_from_config(
        {
            "hjjw": {
                "coordinator_spki": base64.b64encode(vk.spki_der).decode(),
                "coordinator_keyid": vk.keyid,
            },
            "hyzt": {"coordinator_key": "keys/hyzt.pub.pem"},
        },
        tmp_path,
    )
    assert keys == {"hjjw": vk, "hyzt": vk}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "exactly one of coordinator_key or coordinator_spki"),
        ({"coordinator_key": "missing.pem"}, "cannot read coordinator key"),
        ({"coordinator_spki": "AAAA"}, "not a DER SubjectPublicKeyInfo"),
        ({"coordinator_key": "x.pem", "coordinator_spki": "AAAA"}, "exactly one"),
    ],
)
def test_bad_pins_are_config_errors(
    tmp_path: pathlib.Path, table: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        trust_files.coordinator_keys_from_config({"hjjw": table}, tmp_path)


def test_pin_with_a_mistyped_keyid_is_refused(
    tmp_path: pathlib.Path, coordinator: signing.Ed25519Signer
) -> None:
    spki = base64.b64encode(coordinator.spki_der).decode()
    with pytest.raises(ConfigError, match="does not match the key"):
        trust_files.coordinator_keys_from_config(
            {"hjjw": {"coordinator_spki": spki, "coordinator_keyid": "ab" * 32}}, tmp_path
        )


# --- list files in the node home ----------------------------------------------------------


def _write(home: pathlib.Path, env: signing.Envelope, zone: str = "hjjw") -> None:
    trust_files.install_trust_list(home, zone, env.to_json())


def test_newer_list_file_is_picked_up_by_refresh_without_restart(
    tmp_path: pathlib.Path,
    store: trust.TrustStore,
    coordinator: signing.Ed25519Signer,
    huzhou: trust.Member,
    jiaxing: trust.Member,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = trust_files.TrustListFiles(tmp_path, store)
    with caplog.at_level(logging.WARNING, logger="node.trust"):
        assert files.refresh(T0) == []
    assert "no trust list file" in caplog.text

    _write(tmp_path, trust.sign_trust_list(make_list(1, huzhou, jiaxing), coordinator))
    assert files.refresh(T0) == ["hjjw"]
    assert files.refresh(T0) == []  # unchanged file: not re-read
    assert store.member_by_cert_sha256(jiaxing.tls_cert_sha256)

    _write(tmp_path, trust.sign_trust_list(make_list(2, huzhou), coordinator))
    assert files.refresh(T0 + DAY) == ["hjjw"]
    assert store.trust_list("hjjw").version == 2  # type: ignore[union-attr]
    assert store.member_by_cert_sha256(jiaxing.tls_cert_sha256) == []


def test_refused_list_file_is_logged_once_and_the_last_good_list_kept(
    tmp_path: pathlib.Path,
    store: trust.TrustStore,
    coordinator: signing.Ed25519Signer,
    huzhou: trust.Member,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = trust_files.TrustListFiles(tmp_path, store)
    _write(tmp_path, trust.sign_trust_list(make_list(3, huzhou), coordinator))
    files.refresh(T0)
    _write(tmp_path, trust.sign_trust_list(make_list(2, huzhou), coordinator))
    with caplog.at_level(logging.ERROR, logger="node.trust"):
        assert files.refresh(T0) == []
        assert files.refresh(T0) == []
    refusals = [r for r in caplog.records if "refused trust list" in r.getMessage()]
    assert len(refusals) == 1
    assert "version 2, but version 3 was already accepted" in refusals[0].getMessage()
    assert "keeping version 3" in refusals[0].getMessage()
    assert isinstance(files.last_errors["hjjw"], RolledBackTrustList)

    trust_files.trust_list_path(tmp_path, "hjjw").write_text("{not json")
    files.refresh(T0)
    assert isinstance(files.last_errors["hjjw"], CreditNodeError)
    assert store.trust_list("hjjw").version == 3  # type: ignore[union-attr]


def test_list_that_expires_while_held_is_logged_once_as_an_error_and_stays_held(
    tmp_path: pathlib.Path,
    store: trust.TrustStore,
    coordinator: signing.Ed25519Signer,
    huzhou: trust.Member,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """issue 9 §5: a list that expires while in force is reported in the log (an error, once)
    and is no longer in force; it stays held, so its members still authenticate."""
    files = trust_files.TrustListFiles(tmp_path, store)
    _write(tmp_path, trust.sign_trust_list(make_list(1, huzhou, valid=DAY), coordinator))
    files.refresh(T0)
    with caplog.at_level(logging.WARNING, logger="node.trust"):
        files.refresh(T0 + 2 * DAY)
        files.refresh(T0 + 3 * DAY)
    expired = [r for r in caplog.records if "expired at 2026-05-02T00:00:00Z" in r.getMessage()]
    assert len(expired) == 1 and expired[0].levelno == logging.ERROR
    assert "grants nothing" in expired[0].getMessage()
    assert store.zones_in_force(T0 + 2 * DAY) == []
    assert store.member("hjjw", "cn-330500") == huzhou


def test_list_file_replaced_in_place_within_the_same_second_is_seen(
    tmp_path: pathlib.Path,
    store: trust.TrustStore,
    coordinator: signing.Ed25519Signer,
    huzhou: trust.Member,
    jiaxing: trust.Member,
) -> None:
    files = trust_files.TrustListFiles(tmp_path, store)
    _write(tmp_path, trust.sign_trust_list(make_list(1, huzhou), coordinator))
    files.refresh(T0)
    path = trust_files.trust_list_path(tmp_path, "hjjw")
    stamp = path.stat().st_mtime_ns
    _write(tmp_path, trust.sign_trust_list(make_list(2, huzhou, jiaxing), coordinator))
    os.utime(path, ns=(stamp, stamp))  # same mtime: the rename still gives a new inode
    assert files.refresh(T0) == ["hjjw"]


def test_across_zones_a_revocation_anywhere_wins_and_otherwise_the_freshest_list(
    coordinator: signing.Ed25519Signer,
) -> None:
    store = trust.TrustStore(
        {"hjjw": coordinator.verification_key(), "hyzt": coordinator.verification_key()}
    )
    key = signing.Ed25519Signer.generate()
    cert = tls_cert_der("cn-330500")
    active = make_member("cn-330500", key_info(key), cert=cert)
    ended = make_member("cn-330500", key_info(key, trust.VERIFY_ONLY, not_after=T0), cert=cert)
    # hyzt heard of the rotation later than hjjw was issued: its entry is the one used.
    store.offer("hjjw", trust.sign_trust_list(make_list(1, active), coordinator), T0)
    store.offer(
        "hyzt",
        trust.sign_trust_list(make_list(1, ended, zone="hyzt", issued=T0 + DAY), coordinator),
        T0 + DAY,
    )
    assert store.peer_key("cn-330500", key.keyid).status == trust.VERIFY_ONLY
    assert store.peer_key("cn-330500", key.keyid, zone="hjjw").status == trust.ACTIVE
    with pytest.raises(UntrustedKey, match="not at"):
        store.signing_key("cn-330500", key.keyid, T0 + DAY)
    assert store.signing_key("cn-330500", key.keyid, T0 + DAY, zone="hjjw").keyid == key.keyid

    revoked = make_member("cn-330500", key_info(key, trust.REVOKED), cert=cert)
    store.offer("hjjw", trust.sign_trust_list(make_list(2, revoked), coordinator), T0)
    assert not store.trust_list("hjjw").member("cn-330500").signing_keys[0].valid_at(T0)  # type: ignore[union-attr]
    for zone in (None, "hjjw"):
        with pytest.raises(UntrustedKey, match="revoked in the trust list of zone hjjw"):
            store.peer_key("cn-330500", key.keyid, zone=zone)
    assert store.signing_key("cn-330500", key.keyid, T0 - DAY, zone="hyzt").keyid == key.keyid
