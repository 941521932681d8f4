"""The auditor service wired to a running node (floor 6): its store, its log's sequencer for
proofs, its HMAC key for searching a resident, its log key and its witnesses' keys from the
trust lists in force, and the home's `auditors.toml`."""

from __future__ import annotations

import errno

from aiohttp import web

from node import admin_http, model
from node.answer.builder import pseudonymise
from node.audit import web as audit_web
from node.audit.access import AuditorFile
from node.audit.config import AuditWebConfig
from node.errors import AddressInUse, ConfigError
from node.log import notes
from node.runtime import NodeRuntime


def audit_service(runtime: NodeRuntime) -> audit_web.AuditService:
    """The auditor service of `runtime`, whose log is open (`open_log` or `start`)."""

    def witness_keys() -> dict[str, str]:
        keys = runtime.trust.witness_verifier_keys()
        return {
            notes.witness_key_name(peer): keys[peer]
            for peer in runtime.witness_config.peers
            if peer in keys
        }

    def pseudonym(subject: model.SubjectRef) -> model.SubjectRef:
        return pseudonymise(subject, runtime.keys.subject_hmac_key())

    return audit_web.AuditService(
        runtime.store,
        runtime.sequencer,
        AuditorFile(runtime.home),
        pseudonym,
        audit_web.NodeFacts(
            node_id=runtime.node_id,
            name=runtime.config.name,
            log_verifier_key=runtime.keys.public_identity().log_verifier_key,
            witness_keys=witness_keys,
        ),
        runtime.clock,
    )


class AuditWeb:
    """The auditor service on its own port beside the node's gRPC server."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.app = audit_web.application(audit_service(runtime))
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, listen: str) -> str:
        """Serve on host:port (port 0: any free one); the page's URL."""
        host, _, port = listen.rpartition(":")
        self._runner, bound = await admin_http.start(self.app, host or "127.0.0.1", int(port))
        shown = f"[{host}]" if ":" in host else host or "127.0.0.1"
        self.url = f"http://{shown}:{bound}/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def start_configured(runtime: NodeRuntime) -> AuditWeb | None:
    """The auditor service where node.toml's `[auditor_web]` enables it, started (on its
    `listen`, else `[node] audit_listen`); None where it is off."""
    config = AuditWebConfig.from_document(runtime.parts.document, str(runtime.home.config_file))
    if not config.enabled:
        return None
    audit = AuditWeb(runtime)
    listen = config.listen or runtime.config.audit_listen
    try:
        await audit.start(listen)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(
                f"[auditor_web] listen {listen}: another process listens there"
            ) from None
        raise ConfigError(f"[auditor_web] listen {listen}: cannot listen there ({exc})") from None
    return audit
