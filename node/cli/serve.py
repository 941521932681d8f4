"""`creditnode serve` (the node's main job), `creditnode query` (ask a peer), and
`creditnode policy example` (the zones and purposes of the first deployment)."""

from __future__ import annotations

import asyncio
import errno
import json
import pathlib
import signal

import click
from aiohttp import web

from node import admin_http, audit_serving, log_output, model, readiness, scrape_gauges
from node.asking import REJECTED, AskOutcome
from node.cli import exits, names
from node.cli.options import home_option
from node.cli.recognised import recognition_json, recognition_lines
from node.errors import AddressInUse, ConfigError, InvalidInput
from node.home import NodeHome
from node.home_lock import HomeLock
from node.identifiers import is_uscc_shape, mask_resident_id
from node.privacy import PrivacyConfig
from node.process import run_serving_loop, serving_loop_name, settle_gc
from node.runtime import NodeRuntime
from node.serving_config import example_zones_toml
from node.store.engine import describe


def register(main: click.Group) -> None:
    main.add_command(serve)
    main.add_command(query)
    main.add_command(policy)


@click.command()
@click.option("--listen", default=None, help="host:port to listen on (default: node.toml).")
@click.option(
    "--metrics-listen",
    default=None,
    metavar="HOST:PORT",
    help="The local admin port, plain HTTP: /metrics (Prometheus), /healthz and /readyz.",
)
@click.option(
    "--log-level",
    type=click.Choice(log_output.LEVELS, case_sensitive=False),
    default=None,
    envvar=log_output.LEVEL_ENV,
    help="Log this level and above (default INFO; one INFO line per exchange logged).",
)
@click.option(
    "--log-format",
    type=click.Choice(log_output.FORMATS),
    default=None,
    envvar=log_output.FORMAT_ENV,
    help="One line per record: text (default) or a JSON object.",
)
@click.option(
    "--ready-file",
    type=click.Path(path_type=pathlib.Path),
    default=None,
    help="Write the bound address here once serving, whole (for scripts and tests); "
    "from then on SIGTERM stops the node cleanly.",
)
@home_option
def serve(
    listen: str | None,
    metrics_listen: str | None,
    ready_file: pathlib.Path | None,
    log_level: str | None,
    log_format: str | None,
    home: pathlib.Path,
) -> None:
    """Serve peers over gRPC with mutual TLS until SIGINT or SIGTERM.

    node.toml's zones, purposes and rates are re-read when the file changes (within
    seconds), or at once on SIGHUP; a file with a mistake is refused and logged, and the
    policy in force stays.

    One `serve` per home: a second one on the same home exits at once (status 7), as does
    one whose --listen or --metrics-listen address another process holds.
    """
    metrics = _host_port(metrics_listen, "--metrics-listen") if metrics_listen else None
    if listen is not None:
        _host_port(listen, "--listen")
    if ready_file is not None:
        exits.check_out_path(ready_file, "--ready-file")
    node_home = NodeHome(home)
    node_home.load_config()  # a home without node.toml is named as such, before the lock
    log_output.configure(log_level, log_format)  # the answer worker inherits both
    # Held until this process ends: the kernel lets go even on SIGKILL.
    with HomeLock.acquire(node_home.data_dir):
        run_serving_loop(_serve(node_home, listen, ready_file, metrics))


def _host_port(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter("use HOST:PORT with a port up to 65535", param_hint=option)
    return host, int(port)


async def _start_admin(runtime: NodeRuntime, host: str, port: int) -> tuple[web.AppRunner, str]:
    """The admin port (node.admin_http), its readiness from node.readiness; the bound address."""
    address = f"{host or '127.0.0.1'}:{port}"
    app = admin_http.application(
        lambda: readiness.checks(runtime),
        refresh=lambda: scrape_gauges.refresh(runtime.store, runtime.trust, runtime.clock),
    )
    try:
        runner, bound = await admin_http.start(app, host or "127.0.0.1", port)
        return runner, f"{host or '127.0.0.1'}:{bound}"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(
                f"--metrics-listen {address}: another process listens there"
            ) from None
        raise ConfigError(
            f"--metrics-listen {address}: cannot listen there ({exc.strerror or exc})"
        ) from None


async def _serve(
    home: NodeHome,
    listen: str | None,
    ready_file: pathlib.Path | None,
    admin: tuple[str, int] | None,
) -> None:
    runtime = NodeRuntime(home)
    admin_runner, admin_address = None, "off (serve --metrics-listen HOST:PORT)"
    if admin is not None:
        try:  # first: probes see the node starting (ready once it serves)
            admin_runner, bound = await _start_admin(runtime, *admin)
        except BaseException:
            runtime.store.close()
            raise
        admin_address = f"http://{bound}/metrics, /healthz, /readyz (plain HTTP)"
    try:
        await runtime.start(listen)  # one that fails has stopped itself
    except BaseException:
        if admin_runner is not None:
            await admin_runner.cleanup()
        raise
    settle_gc()
    assert runtime.server is not None
    # Before anyone can learn that we serve (the ready file, the log): a SIGTERM sent the
    # moment the node is seen serving stops it cleanly instead of killing it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # SIGHUP (systemd's ExecReload): node.toml's zone policy now, not at the next poll.
    loop.add_signal_handler(signal.SIGHUP, runtime.request_reload)
    audit = None
    try:
        now = runtime.clock.now()
        zones = ", ".join(runtime.trust.zones_in_force(now)) or "none (install trust lists)"
        expired = runtime.trust.expired_zones(now)
        if expired:  # held, but granting nothing until the coordinator signs a newer list
            zones += f"; expired lists (not granting): {', '.join(expired)}"
        click.echo(
            f"{runtime.node_id} serving on {runtime.server.target}; zones: {zones}; "
            f"event loop: {serving_loop_name()}"
        )
        click.echo(f"  store: {describe(runtime.store.engine.url)}")
        click.echo(f"  gRPC, mutual TLS: {runtime.server.target}")
        click.echo(f"  admin: {admin_address}")
        audit = await audit_serving.start_configured(runtime)  # node.toml [auditor_web]
        if audit is not None:
            click.echo(f"  auditor page: {audit.url}")
        if ready_file is not None:  # whole or not at all: a watcher may read it at once
            partial = ready_file.with_name(ready_file.name + ".partial")
            partial.write_text(runtime.server.target)
            partial.replace(ready_file)
        await stop.wait()
    finally:
        click.echo(f"{runtime.node_id} stopping")
        if audit is not None:
            await audit.stop()
        await runtime.stop()
        if admin_runner is not None:
            await admin_runner.cleanup()


@click.command()
@click.option(
    "--peer",
    required=True,
    help="The node to ask: its id (cn-330400) or its trust-list name (嘉兴).",
)
@click.option(
    "--zone",
    required=True,
    help="The cooperation zone: its id (hjjw) or node.toml name (湖嘉金温).",
)
@click.option("--purpose", required=True, help="The declared purpose, e.g. xinyi-dai.")
@click.option("--subject", required=True, help="USCC (or resident id with --resident-id).")
@click.option("--resident-id", is_flag=True, help="The subject is a natural person.")
@click.option(
    "--legacy",
    is_flag=True,
    help="The USCC is a legacy register code whose check character is wrong; the "
    "peer answers only if its legacy-uscc.txt lists it.",
)
@click.option("--request-id", default=None, help="Reuse a request id (idempotent).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.option(
    "--show-personal",
    is_flag=True,
    help="Print a resident id in clear (and a person's signed envelope); only where "
    "node.toml's [privacy] operator_may_show_personal is true.",
)
@home_option
def query(
    peer: str,
    zone: str,
    purpose: str,
    subject: str,
    resident_id: bool,
    legacy: bool,
    request_id: str | None,
    as_json: bool,
    show_personal: bool,
    home: pathlib.Path,
) -> None:
    """Ask a peer for a subject's credit result; verify and record the answer.

    A resident id is shown masked (330500********0387) unless --show-personal is given and
    this node allows it. A USCC whose check character is wrong is sent only with --legacy
    (a legacy register code); the peer answers it only if its own legacy-uscc.txt lists it.

    \b
    Exit status: 0 GRANTED, 3 REFUSED, 4 NOT_FOUND, 5 REJECTED (the answer did not verify),
    1 FAILED (no answer: peer unreachable, …), 2 usage error; see `creditnode --help`.
    """
    node_home = NodeHome(home)
    document = node_home.load_document()
    privacy = PrivacyConfig.from_document(document, source=str(node_home.config_file))
    if show_personal and not privacy.operator_may_show_personal:
        raise click.ClickException(
            "--show-personal is not allowed on this node: set operator_may_show_personal = true "
            f"in the [privacy] table of {node_home.config_file} to allow it"
        )
    if legacy and resident_id:
        raise click.BadParameter("a resident id has no legacy form", param_hint="--legacy")
    id_type = model.SubjectIdType.RESIDENT_ID if resident_id else model.SubjectIdType.USCC
    try:
        ref = model.SubjectRef(id_type, subject, admitted=legacy)
    except InvalidInput as exc:
        raise click.BadParameter(
            _legacy_hint(exc.message, subject, resident_id), param_hint="--subject"
        ) from None
    try:
        zone = names.resolve_zone(zone, names.zone_names(document))
    except InvalidInput as exc:
        raise click.BadParameter(exc.message, param_hint="--zone") from None
    outcome = asyncio.run(_ask(node_home, peer, zone, purpose, ref, request_id))
    if as_json:
        doc = outcome_json(outcome, show_personal=show_personal)
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        click.echo(outcome_text(outcome, show_personal=show_personal))
    rejected = outcome.answer is None and outcome.reason.startswith(REJECTED)
    raise SystemExit(exits.for_decision(outcome.decision, rejected))


def _legacy_hint(message: str, subject: str, resident_id: bool) -> str:
    """A USCC refused for its check character alone may be a legacy register code (DESIGN.md
    §9): say how to ask about one."""
    if resident_id or not is_uscc_shape(subject):
        return message
    return f"{message}; if it is a legacy register code, ask with --legacy"


async def _ask(
    home: NodeHome,
    peer: str,
    zone: str,
    purpose: str,
    subject: model.SubjectRef,
    request_id: str | None,
) -> AskOutcome:
    runtime = NodeRuntime(home)
    try:
        lists = [t for z in runtime.trust.zones() if (t := runtime.trust.trust_list(z))]
        try:
            peer = names.resolve_peer(peer, lists, zone)
        except InvalidInput as exc:
            raise click.BadParameter(exc.message, param_hint="--peer") from None
        await runtime.open_log()
        return await runtime.ask(peer, zone, purpose, subject, request_id)
    finally:
        await runtime.stop()


def _masks(subject: model.SubjectRef, show_personal: bool) -> bool:
    return subject.id_type is model.SubjectIdType.RESIDENT_ID and not show_personal


def _shown(subject: model.SubjectRef, show_personal: bool) -> str:
    return mask_resident_id(subject.id) if _masks(subject, show_personal) else subject.id


def _reason_shown(outcome: AskOutcome, show_personal: bool) -> str:
    """The reason, with the subject's id masked wherever a peer's text quoted it."""
    subject = outcome.query.subject
    return outcome.reason.replace(subject.id, _shown(subject, show_personal))


def outcome_json(outcome: AskOutcome, *, show_personal: bool = False) -> dict[str, object]:
    """The outcome as JSON; a resident id masked unless `show_personal`. A masked person's
    envelope is left out: its payload holds the id in clear."""
    masked = _masks(outcome.query.subject, show_personal)
    doc: dict[str, object] = {
        "request_id": outcome.query.request_id,
        "zone": outcome.query.zone,
        "purpose": outcome.query.purpose,
        "subject": _shown(outcome.query.subject, show_personal),
        "decision": outcome.decision.name,
        "reason": _reason_shown(outcome, show_personal),
        "asked_log_index": outcome.log_index,
    }
    if outcome.answer is not None:
        r = outcome.answer.result
        doc["result"] = {
            "result_id": r.result_id,
            "subject_name": r.subject_name,
            "subject_type": r.subject_type.name,
            "issuer_node": r.issuer_node,
            "scheme": r.scheme,
            "native_level": r.native_level,
            "native_score": r.native_score,
            "level": r.level.name,
            "flags": list(r.flags),
            "indicators": dict(r.indicators),
            "evaluated_at": r.evaluated_at.isoformat(),
            "valid_until": r.valid_until.isoformat(),
            "issued_at": r.issued_at.isoformat() if r.issued_at else None,
            "log_index": r.log_index,
            "signed_by": outcome.answer.signed_by,
        }
        doc["envelope"] = None if masked else json.loads(outcome.answer.envelope.to_json())
        doc["receipt"] = {
            "log_index": outcome.answer.receipt.log_index,
            "checkpoint": outcome.answer.receipt.checkpoint,
        }
        doc.update(recognition_json(outcome.recognised))  # issue 11 §4
    return doc


def outcome_text(outcome: AskOutcome, *, show_personal: bool = False) -> str:
    """The outcome for a person to read; a resident id masked unless `show_personal`."""
    q = outcome.query
    subject = _shown(q.subject, show_personal)
    head = f"{subject} in {q.zone} for {q.purpose} (request {q.request_id})"
    if outcome.answer is None:
        label = "REJECTED" if outcome.reason.startswith(REJECTED) else outcome.decision.name
        return f"{label}: {head}\n  {_reason_shown(outcome, show_personal)}"
    r = outcome.answer.result
    score = f", score {r.native_score:g}" if r.native_score is not None else ""
    flags = f", flags {' '.join(r.flags)}" if r.flags else ""
    recognised = "".join(f"\n  {line}" for line in recognition_lines(r, outcome.recognised))
    return (
        f"GRANTED (signature, binding and log receipt verified): {head}\n"
        f"  {r.subject_name} [{r.subject_type.name}] level {r.level.name} "
        f"({r.scheme} {r.native_level}{score}{flags}), valid until {r.valid_until.date()}\n"
        f"  issued by {r.issuer_node} at log index {r.log_index}; "
        f"recorded here at {outcome.log_index}{recognised}"
    )


@click.group()
def policy() -> None:
    """Zone policy helpers."""


@policy.command("example")
def policy_example() -> None:
    """Print the zones and purposes of the first deployment, to add to node.toml."""
    click.echo(example_zones_toml(), nl=False)
