"""`creditnode zone …`: a zone coordinator's tools, and a node's pinning of a zone (floor 6).

The coordinator keeps, in one directory, its Ed25519 key (`<zone>.coordinator.key`, mode 0600,
never shared; PKCS#8-encrypted when $CREDITNODE_KEY_PASSPHRASE is set), the public key to hand
to members (`<zone>.coordinator.pub.pem`) and the draft member list (`<zone>.draft.json`);
`zone sign` turns the draft into the signed DSSE list file, and `zone serve` publishes the
signed files of a directory over HTTP for members to poll (node.trust_publish).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import ipaddress
import json
import os
import pathlib
import signal
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from node import signing, trust, trust_files, trust_publish, wire
from node.cli import exits
from node.cli.options import home_option
from node.clock import SYSTEM
from node.errors import (
    AddressInUse,
    ConfigError,
    CreditNodeError,
    InvalidInput,
    KeyMaterialError,
)
from node.home import NodeHome
from node.keys import (
    PASSPHRASE_ENV,
    certificate_hosts,
    is_encrypted_at_rest,
    passphrase_from_env,
    private_key_encryption,
)
from node.store import Store

DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=pathlib.Path("."),
    show_default=True,
    help="The coordinator's directory holding the zone key and draft.",
)
ZONE_OPTION = click.option("--zone", required=True, help="Zone id, e.g. hjjw.")


def _key_path(directory: pathlib.Path, zone: str) -> pathlib.Path:
    return directory / f"{zone}.coordinator.key"


def _pub_path(directory: pathlib.Path, zone: str) -> pathlib.Path:
    return directory / f"{zone}.coordinator.pub.pem"


def _draft_path(directory: pathlib.Path, zone: str) -> pathlib.Path:
    return directory / f"{zone}.draft.json"


def _check_zone(zone: str) -> None:
    if not trust.ZONE_RE.match(zone):
        raise InvalidInput(f"zone must be a lower-case slug like 'hjjw', got {zone!r}")


def _write_atomic(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)  # O_CREAT's mode is masked by the umask; a key must be exactly 0600
    os.replace(tmp, path)


# --- the draft ----------------------------------------------------------------------------


def _load_draft(directory: pathlib.Path, zone: str) -> dict[str, Any]:
    path = _draft_path(directory, zone)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no draft for zone {zone} in {directory}: run `creditnode zone init --zone {zone}`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("zone") != zone
        or not isinstance(doc.get("members"), list)
    ):
        raise ConfigError(f"{path} is not the draft of zone {zone}")
    return doc


def _draft_members(doc: dict[str, Any]) -> list[trust.Member]:
    return [trust.member_from_json(m) for m in doc["members"]]


def _save_draft(
    directory: pathlib.Path, zone: str, version: int, members: list[trust.Member]
) -> None:
    doc = {
        "zone": zone,
        "version": version,  # the last version signed; `zone sign` issues version + 1
        "members": [trust.member_to_json(m) for m in sorted(members, key=lambda m: m.node_id)],
    }
    _write_atomic(_draft_path(directory, zone), (json.dumps(doc, indent=2) + "\n").encode())


def _load_coordinator(directory: pathlib.Path, zone: str) -> signing.Ed25519Signer:
    path = _key_path(directory, zone)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read the coordinator key {path}: {exc.strerror}") from None
    passphrase = passphrase_from_env()
    encrypted = is_encrypted_at_rest(pem)
    if encrypted and passphrase is None:
        raise KeyMaterialError(
            f"{path} is encrypted: set {PASSPHRASE_ENV} to the passphrase it was written with"
        )
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase if encrypted else None)
    except (ValueError, TypeError) as exc:
        if encrypted:
            raise KeyMaterialError(
                f"cannot decrypt {path}: {PASSPHRASE_ENV} is not the passphrase it was written with"
            ) from None
        raise KeyMaterialError(f"{path} is not a PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyMaterialError(f"{path} is not an Ed25519 key")
    return signing.Ed25519Signer(key)


def _now() -> dt.datetime:
    return SYSTEM.now().replace(microsecond=0)


# --- commands -----------------------------------------------------------------------------


@click.group(name="zone")
def zone_group() -> None:
    """Coordinate a zone's trust list, or pin a zone on this node."""


@zone_group.command(name="init")
@ZONE_OPTION
@DIR_OPTION
@click.option("--force", is_flag=True, help="Replace an existing coordinator key (and draft).")
def init_command(zone: str, directory: pathlib.Path, force: bool) -> None:
    """Create the zone coordinator's Ed25519 key and an empty draft list."""
    _check_zone(zone)
    key_path = _key_path(directory, zone)
    if key_path.exists() and not force:
        raise KeyMaterialError(
            f"{key_path} already exists; pass --force to replace it (members must then pin "
            "the new key)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    signer = signing.Ed25519Signer.generate()
    passphrase = passphrase_from_env()
    _write_atomic(
        key_path,
        signer.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            private_key_encryption(passphrase),
        ),
        0o600,
    )
    _write_atomic(_pub_path(directory, zone), trust_files.public_key_pem(signer.verification_key()))
    _save_draft(directory, zone, 0, [])
    click.echo(f"zone {zone}: coordinator key {signer.keyid}")
    protection = f"encrypted with ${PASSPHRASE_ENV}" if passphrase else "NOT encrypted"
    click.echo(f"  private key  {key_path} (keep it secret; {protection})")
    click.echo(f"  public key   {_pub_path(directory, zone)} (give it to every member)")
    click.echo(f"  draft list   {_draft_path(directory, zone)} (version 0, no members)")
    click.echo(
        f"Members pin it with: creditnode zone pin --zone {zone} "
        f"--coordinator-key {_pub_path(directory, zone).name}"
    )


@zone_group.command(name="add-member")
@ZONE_OPTION
@click.option(
    "--identity",
    "identity_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=pathlib.Path),
    help="The node's `creditnode identity export` JSON.",
)
@click.option("--endpoint", required=True, help="Where peers reach the node, HOST:PORT.")
@click.option(
    "--roles", default="node", show_default=True, help="Comma-separated roles of the member."
)
@DIR_OPTION
def add_member_command(
    zone: str, identity_file: pathlib.Path, endpoint: str, roles: str, directory: pathlib.Path
) -> None:
    """Add a node to the draft (re-adding a node replaces its entry)."""
    _check_zone(zone)
    doc = _load_draft(directory, zone)
    try:
        identity = json.loads(identity_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InvalidInput(f"{identity_file} is not JSON: {exc}") from None
    member = trust.member_from_identity(
        identity, endpoint=endpoint, roles=tuple(r.strip() for r in roles.split(",") if r.strip())
    )
    members = [m for m in _draft_members(doc) if m.node_id != member.node_id]
    replaced = len(members) < len(doc["members"])
    # Check the draft as a whole (unique certificates and keys) before saving it.
    trust.check_members(zone, [*members, member])
    _save_draft(directory, zone, int(doc["version"]), [*members, member])
    click.echo(
        f"zone {zone}: {'replaced' if replaced else 'added'} {member.node_id} {member.name} "
        f"at {member.endpoint} ({len(member.signing_keys)} signing key(s)); "
        f"{len(members) + 1} member(s) in the draft"
    )
    _warn_unnamed_host(member)


def _warn_unnamed_host(member: trust.Member) -> None:
    """Peers check that the member's certificate names the host of its endpoint: say so
    now, not at the first handshake ("Hostname Verification Check failed")."""
    host = member.endpoint.rpartition(":")[0].removeprefix("[").removesuffix("]").lower()
    named = certificate_hosts(x509.load_der_x509_certificate(member.tls_cert_der))
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = host.removesuffix(".")
    if host and host not in {n.lower() for n in named}:
        shown = host if len(host) <= 64 else host[:64] + "…"
        click.echo(
            f"warning: {member.node_id}'s TLS certificate names {', '.join(named) or 'no host'}, "
            f"not {shown}: peers will fail to verify it at {member.endpoint[:80]}. On that node, "
            f"`creditnode tls reissue --host {shown}` and send its new identity export",
            err=True,
        )


@zone_group.command(name="remove-member")
@ZONE_OPTION
@click.option("--node-id", required=True, help="The member to remove, e.g. cn-330400.")
@DIR_OPTION
def remove_member_command(zone: str, node_id: str, directory: pathlib.Path) -> None:
    """Remove a node from the draft."""
    _check_zone(zone)
    doc = _load_draft(directory, zone)
    members = _draft_members(doc)
    kept = [m for m in members if m.node_id != node_id]
    if len(kept) == len(members):
        known = ", ".join(m.node_id for m in members) or "none"
        raise InvalidInput(f"{node_id} is not in the draft of zone {zone} (members: {known})")
    _save_draft(directory, zone, int(doc["version"]), kept)
    click.echo(f"zone {zone}: removed {node_id}; {len(kept)} member(s) in the draft")


@zone_group.command(name="sign")
@ZONE_OPTION
@click.option("--valid-days", default=30, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    help="Where to write the signed list (DSSE JSON).",
)
@DIR_OPTION
def sign_command(zone: str, valid_days: int, out: pathlib.Path, directory: pathlib.Path) -> None:
    """Sign the draft as the next version of the zone's trust list."""
    _check_zone(zone)
    exits.check_out_path(out, "--out")
    doc = _load_draft(directory, zone)
    coordinator = _load_coordinator(directory, zone)
    now = _now()
    trust_list = trust.TrustList(
        zone=zone,
        version=int(doc["version"]) + 1,
        issued_at=now,
        expires_at=now + dt.timedelta(days=valid_days),
        members=tuple(_draft_members(doc)),
    )
    envelope = trust.sign_trust_list(trust_list, coordinator)
    _write_atomic(out, (envelope.to_json() + "\n").encode())
    _save_draft(directory, zone, trust_list.version, list(trust_list.members))
    click.echo(
        f"zone {zone}: signed version {trust_list.version} with {len(trust_list.members)} "
        f"member(s), expires {trust_list.expires_at.isoformat()} -> {out}"
    )


@zone_group.command(name="show")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=pathlib.Path))
@click.option(
    "--coordinator-key",
    type=click.Path(dir_okay=False, exists=True, path_type=pathlib.Path),
    help="Verify the list with this coordinator public key (PEM).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def show_command(file: pathlib.Path, coordinator_key: pathlib.Path | None, as_json: bool) -> None:
    """Print a signed trust list, verifying it when a coordinator key is given."""
    envelope = signing.Envelope.from_json(file.read_bytes())
    if coordinator_key is not None:
        pem = trust_files.read_public_key_pem(coordinator_key)
        key = signing.VerificationKey.from_spki_der(pem)
        trust_list = trust.open_trust_list(envelope, key, now=_now(), held_version=None)
        status = f"verified with coordinator key {key.keyid}"
    else:
        trust_list = wire.trust_list_from_bytes(envelope.payload)
        status = "NOT VERIFIED (pass --coordinator-key to verify)"
    if as_json:
        click.echo(json.dumps(trust.trust_list_to_json(trust_list), indent=2, ensure_ascii=False))
        return
    click.echo(f"zone {trust_list.zone} version {trust_list.version}: {status}")
    click.echo(f"  issued  {trust_list.issued_at.isoformat()}")
    click.echo(f"  expires {trust_list.expires_at.isoformat()}")
    for m in trust_list.members:
        click.echo(f"  {m.node_id} {m.name} {m.endpoint} roles={','.join(m.roles)}")
        click.echo(f"    tls sha256 {m.tls_cert_sha256}")
        click.echo(f"    log key     {m.log_verifier_key or '- (not in this list)'}")
        click.echo(f"    witness key {m.witness_verifier_key or '- (not in this list)'}")
        for k in m.signing_keys:
            until = k.not_after.isoformat() if k.not_after else "-"
            click.echo(
                f"    key {k.keyid} {k.algorithm} {k.status} from {k.not_before.isoformat()} "
                f"until {until}"
            )


@zone_group.command(name="pin")
@ZONE_OPTION
@click.option(
    "--coordinator-key",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=pathlib.Path),
    help="The coordinator's public key (PEM) handed out by `zone init`.",
)
@home_option
def pin_command(zone: str, coordinator_key: pathlib.Path, home: pathlib.Path) -> None:
    """Pin a zone's coordinator key in this node's node.toml ([trust.<zone>])."""
    node_home = NodeHome(home)
    key = signing.VerificationKey.from_spki_der(trust_files.read_public_key_pem(coordinator_key))
    trust_files.pin_coordinator_key(node_home, zone, key)
    click.echo(f"zone {zone}: pinned coordinator key {key.keyid} in {node_home.config_file}")


@zone_group.command(name="install")
@ZONE_OPTION
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=pathlib.Path))
@home_option
def install_command(zone: str, file: pathlib.Path, home: pathlib.Path) -> None:
    """Check a signed list against the pinned key and the versions accepted before, then
    install it.

    The versions accepted before are the node store's record (a restart keeps them), so a list
    older than one this node ever accepted is refused even if the file in zones/ was replaced.
    A running node picks the installed file up on its next refresh, without restart.
    """
    node_home = NodeHome(home)
    with Store.open(node_home.db_url()) as store:
        files = trust_files.load_home_trust(node_home, _now(), store.trust_floors)
        if zone not in files.store.pinned_zones:
            raise ConfigError(
                f"zone {zone} is not pinned in {node_home.config_file}: run `creditnode zone "
                f"pin --zone {zone} --coordinator-key <PEM>` first"
            )
        text = file.read_text(encoding="utf-8")
        held = files.store.trust_list(zone)
        now = _now()
        try:
            files.store.offer(zone, text, now)
        except CreditNodeError:
            kept = f"version {held.version} stays installed" if held else "nothing was installed"
            click.echo(f"zone {zone}: refused {file}; {kept}", err=True)
            raise
        trust_list = files.store.trust_list(zone)
        assert trust_list is not None
        path = trust_files.install_trust_list(node_home.path, zone, text)
        files.record_floors(now)  # once the file is in place: its version is now the floor
    click.echo(
        f"zone {zone}: installed version {trust_list.version} "
        f"({len(trust_list.members)} members, expires {trust_list.expires_at.isoformat()}) "
        f"at {path}"
    )


@zone_group.command(name="serve")
@click.option(
    "--root",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=pathlib.Path),
    help="The directory of signed lists (zone sign --out ROOT/<zone>.trustlist.json).",
)
@click.option(
    "--listen",
    default="127.0.0.1:8700",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve them over HTTP (port 0: any free port).",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=pathlib.Path),
    default=None,
    help="Write the bound HOST:PORT here once serving (for scripts and tests).",
)
def serve_command(root: pathlib.Path, listen: str, ready_file: pathlib.Path | None) -> None:
    """Publish the signed lists in ROOT at http://HOST:PORT/<zone>.trustlist.json until
    SIGINT or SIGTERM.

    Members set `trust_list_url` under `[zones.<zone>]` in node.toml to that URL and poll it
    (with ETag / If-Modified-Since: an unchanged list costs no body). A list signed into ROOT
    later is served from the next request on. Plain HTTP: members check the signature.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter("use HOST:PORT with a port up to 65535", param_hint="--listen")
    if ready_file is not None:
        exits.check_out_path(ready_file, "--ready-file")
    asyncio.run(_publish(root, host or "127.0.0.1", int(port), ready_file))


async def _publish(
    root: pathlib.Path, host: str, port: int, ready_file: pathlib.Path | None
) -> None:
    try:
        runner, bound = await trust_publish.start(root, host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"--listen {host}:{port}: another process listens there") from None
        raise ConfigError(
            f"--listen {host}:{port}: cannot listen there ({exc.strerror or exc})"
        ) from None
    address = f"{host}:{bound}"
    lists = sorted(p.name for p in root.glob("*.trustlist.json"))
    click.echo(
        f"serving trust lists from {root} at http://{address}/<zone>.trustlist.json "
        f"({', '.join(lists) or 'none yet'})"
    )
    if ready_file is not None:
        ready_file.write_text(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def register(main: click.Group) -> None:
    main.add_command(zone_group)
