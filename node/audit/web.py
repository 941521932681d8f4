"""The auditor service over HTTP (DESIGN.md §8, issue 13): a JSON API under `api/` and the
page under `/` that checks what it shows (node/audit/static/).

Thin handlers: parameters → node.audit.query → the index (node.store.audit) and the log
(node.log.store, the sequencer's tree for proofs) → JSON, CSV or NDJSON. One middleware
authenticates every API request (node.audit.access), answers every refusal as
`{"error": {"reason", "message"}}` with the HTTP status node.error_status gives it, and records
the request — who, what, with which filter, how many rows, when, answered how — in the
append-only access log. One route writes: an operator's credit repair of a penalty record
(`POST api/records/{record_id}/repair`, node.credit_repair). Every URL the page uses is
relative, so the application can be mounted under a prefix beside another (the admin port's)
with `add_subapp`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import csv
import dataclasses
import datetime as dt
import importlib.resources
import io
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

from node import credit_repair
from node.audit import openapi, records, repairs
from node.audit.access import OPERATOR, Auditor, AuditorFile
from node.audit.index import LogIndexer
from node.audit.query import Pseudonymise, check_known, parse_limit, parse_search, value
from node.clock import SYSTEM, Clock
from node.error_status import classify
from node.errors import CreditNodeError, InvalidInput, NotFound, PermissionDenied
from node.log import merkle, notes
from node.log.store import LogStore
from node.repair import RepairTooEarly
from node.store import Store
from node.store.audit import AccessRecord, AuditRepository

log = logging.getLogger(__name__)

SEARCH_CATCH_UP = 20_000  # entries a search indexes before answering, at most
EXPORT_CHUNK = 1000
MAX_CHART_ROWS = 5000
DEFAULT_CHART_DAYS = 31
_INDEX = re.compile(r"[0-9]{1,19}")
_STATIC = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "verify.js": "text/javascript",
    "i18n.js": "text/javascript",
    "style.css": "text/css",
}
# The page loads nothing from anywhere else, and nothing may frame it.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
CSV_ENCODINGS = {"utf-8": "utf-8-sig", "gb18030": "gb18030"}  # utf-8 with BOM for spreadsheets


class ProofSource(Protocol):
    """The log's committed tree and latest checkpoint (node.log.sequencer.Sequencer)."""

    latest_checkpoint: str

    @property
    def behind(self) -> bool: ...

    @property
    def tree(self) -> merkle.InMemoryTree: ...

    async def refresh(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class NodeFacts:
    """What the page pins and shows: whose log it is and the keys that sign it."""

    node_id: str
    name: str
    log_verifier_key: str
    # name -> verifier key of each witness of this log (from the trust lists in force)
    witness_keys: Callable[[], Mapping[str, str]]


class AuditService:
    """The API's handlers, on the node's store and its log's proof source."""

    def __init__(
        self,
        db: Store,
        proofs: ProofSource,
        auditors: AuditorFile,
        pseudonymise: Pseudonymise,
        facts: NodeFacts,
        clock: Clock = SYSTEM,
    ) -> None:
        self.store = db
        self.repository = AuditRepository(db)
        self.log = LogStore(db, clock)
        self.indexer = LogIndexer(self.log, self.repository)
        self.proofs = proofs
        self.auditors = auditors
        self.pseudonymise = pseudonymise
        self.facts = facts
        self.clock = clock
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Index what the log holds, then follow it in the background."""
        self._follower = asyncio.create_task(self.indexer.follow(), name="audit-index")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    # --- the log's proofs -------------------------------------------------------------------

    async def latest(self, wanted: int = 0) -> tuple[str, int]:
        """The latest checkpoint (caught up first when asked about a larger tree)."""
        note = self.proofs.latest_checkpoint
        if not note or notes.checkpoint_size(note) < wanted or self.proofs.behind:
            await self.proofs.refresh()
            note = self.proofs.latest_checkpoint
        if not note:
            raise NotFound("this node's exchange log has no checkpoint yet", reason="NO_CHECKPOINT")
        return note, notes.checkpoint_size(note)

    def cosigned(self, note: str, size: int) -> str:
        lines = self.log.cosignature_lines(size)
        return notes.add_signature_lines(note, lines) if lines else note

    # --- handlers ---------------------------------------------------------------------------

    async def info(self, request: web.Request) -> web.Response:
        auditor = _auditor(request)
        check_known(request.query, ())
        _note, size = await self.latest()
        return _json(
            {
                "node_id": self.facts.node_id,
                "name": self.facts.name,
                "log_origin": notes.log_origin(self.facts.node_id),
                "log_verifier_key": self.facts.log_verifier_key,
                "witnesses": [
                    {"name": name, "verifier_key": key}
                    for name, key in sorted(self.facts.witness_keys().items())
                ],
                "log_size": size,
                "indexed_size": self.indexer.size,
                "you": {
                    "name": auditor.name,
                    "role": auditor.role,
                    "zones": auditor.zones_text,
                    "personal": auditor.personal,
                },
            }
        )

    async def search(self, request: web.Request) -> web.Response:
        auditor = _auditor(request)
        search = parse_search(request.query, auditor.scope, self.pseudonymise)
        _record_filter(request, search.recorded)
        indexed = await asyncio.to_thread(self.indexer.catch_up, SEARCH_CATCH_UP)
        query = dataclasses.replace(search.query, upto=indexed)
        indices = await asyncio.to_thread(self.repository.search, query, search.limit + 1)
        more = len(indices) > search.limit
        indices = indices[: search.limit]
        data = await asyncio.to_thread(self.log.entries_at, indices)
        entries = [records.view(i, records.decode(data[i]), auditor.personal) for i in indices]
        _call().rows = len(entries)
        return _json(
            {
                "entries": entries,
                "next_cursor": str(indices[-1]) if more else None,
                "indexed_size": indexed,
            }
        )

    async def entry(self, request: web.Request) -> web.Response:
        auditor = _auditor(request)
        check_known(request.query, ())
        text = request.match_info["index"]
        if not _INDEX.fullmatch(text):
            raise InvalidInput("an entry is named by its index, a whole number")
        index = int(text)
        _record_filter(request, {"index": text})
        data = (await asyncio.to_thread(self.log.entries_at, [index])).get(index)
        if data is None:
            raise NotFound(f"the log has no entry {index} yet", reason="NO_SUCH_ENTRY")
        record = records.decode(data)
        if not auditor.scope.allows(record.zone if record is not None else None):
            raise PermissionDenied(
                f"entry {index} is of a zone this auditor may not read", reason="ZONE_NOT_ALLOWED"
            )
        note, size = await self.latest(index + 1)
        tree = self.proofs.tree
        # A person's entry holds their pseudonym: its bytes go to a reader who may see it
        # whole; for the others the page checks the proof from the leaf hash alone.
        withheld = records.is_personal(record) and not auditor.personal
        _call().rows = 1
        return _json(
            {
                "entry": records.view(index, record, auditor.personal),
                "data": None if withheld else _b64(data),
                "leaf_hash": _b64(tree.leaf(index)),
                "proof": {
                    "index": index,
                    "tree_size": size,
                    "hashes": [_b64(h) for h in tree.inclusion_proof(index, size)],
                },
                "checkpoint": await asyncio.to_thread(self.cosigned, note, size),
            }
        )

    async def checkpoints(self, request: web.Request) -> web.Response:
        _auditor(request)
        check_known(request.query, ("before", "limit"))
        before_text = value(request.query, "before")
        if before_text is not None and not _INDEX.fullmatch(before_text):
            raise InvalidInput("before must be a tree size, a whole number")
        before = int(before_text) if before_text is not None else None
        limit = parse_limit(value(request.query, "limit"), default=20, most=200)
        _record_filter(request, {k: v for k, v in request.query.items() if v})
        latest, _ = await self.latest()
        signed = await asyncio.to_thread(self.log.checkpoints, before, limit)

        def cosigned() -> list[dict[str, Any]]:
            return [
                {
                    "size": c.size,
                    "root": _b64(c.root),
                    "signed_at": _time(c.created_at),
                    "note": self.cosigned(c.note, c.size),
                }
                for c in signed
            ]

        items = await asyncio.to_thread(cosigned)
        _call().rows = len(items)
        return _json(
            {
                "latest": await asyncio.to_thread(
                    self.cosigned, latest, notes.checkpoint_size(latest)
                ),
                "checkpoints": items,
                "next_before": str(signed[-1].size) if len(signed) == limit else None,
            }
        )

    async def consistency(self, request: web.Request) -> web.Response:
        _auditor(request)
        check_known(request.query, ("from", "to"))
        sizes = []
        for name in ("from", "to"):
            text = value(request.query, name)
            if text is None or not _INDEX.fullmatch(text):
                raise InvalidInput(f"{name} must be a tree size, a whole number")
            sizes.append(int(text))
        old, new = sizes
        _record_filter(request, {"from": str(old), "to": str(new)})
        _, latest = await self.latest(new)
        # RFC 9162 §2.1.4: a proof is defined for 0 < first <= second.
        if not 0 < old <= new:
            raise InvalidInput(f"from ({old}) must be at least 1 and at most to ({new})")
        if new > latest:
            raise InvalidInput(f"to ({new}) is beyond the latest checkpoint's size {latest}")
        hashes = self.proofs.tree.consistency_proof(old, new)
        _call().rows = 1
        return _json({"from": old, "to": new, "hashes": [_b64(h) for h in hashes]})

    async def stats(self, request: web.Request) -> web.Response:
        auditor = _auditor(request)
        search = parse_search(request.query, auditor.scope, self.pseudonymise, extra=())
        _record_filter(request, search.recorded)
        query = search.query
        await asyncio.to_thread(self.indexer.catch_up, SEARCH_CATCH_UP)
        since_us = query.since_us
        if since_us is None:  # the last month of the log's activity
            newest = await asyncio.to_thread(self.repository.newest_time_us)
            end = self.clock.now() if newest is None else records.from_micros(newest)
            since_us = records.micros(end - dt.timedelta(days=DEFAULT_CHART_DAYS))
            query = dataclasses.replace(query, since_us=since_us)
        volume = await asyncio.to_thread(self.repository.volume_by_peer_day, query, MAX_CHART_ROWS)
        refusals = await asyncio.to_thread(
            self.repository.refusals_by_reason, query, MAX_CHART_ROWS
        )
        _call().rows = len(volume) + len(refusals)
        return _json(
            {
                "since": _time(records.from_micros(since_us)),
                "volume": [
                    {
                        "day": f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}",
                        "peer": p,
                        "count": n,
                    }
                    for d, p, n in volume
                ],
                "refusals": [{"reason": r, "count": n} for r, n in refusals],
            }
        )

    async def export(self, request: web.Request) -> web.StreamResponse:
        auditor = _auditor(request)
        params = {k: v for k, v in request.query.items() if k not in ("format", "encoding")}
        search = parse_search(params, auditor.scope, self.pseudonymise, extra=("order",))
        kind = value(request.query, "format") or "csv"
        if kind not in ("csv", "ndjson"):
            raise InvalidInput("format must be csv or ndjson")
        encoding = value(request.query, "encoding") or "utf-8"
        if encoding not in CSV_ENCODINGS or (kind == "ndjson" and encoding != "utf-8"):
            raise InvalidInput("encoding must be utf-8 or gb18030 (gb18030 for csv only)")
        _record_filter(request, {**search.recorded, "format": kind, "encoding": encoding})
        indexed = await asyncio.to_thread(self.indexer.catch_up, None)
        # The export is of the log as it stood when it began: appends meanwhile are not chased.
        query = dataclasses.replace(search.query, upto=indexed)
        day = self.clock.now().date().isoformat()
        response = web.StreamResponse(
            headers={
                **_API_HEADERS,
                "Content-Type": (
                    f"text/csv; charset={encoding}"
                    if kind == "csv"
                    else "application/x-ndjson; charset=utf-8"
                ),
                "Content-Disposition": (
                    f'attachment; filename="exchange-log-{self.facts.node_id}-{day}.{kind}"'
                ),
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        render = _csv_renderer(CSV_ENCODINGS[encoding]) if kind == "csv" else _ndjson
        _call().rows = 0
        if kind == "csv":
            await response.write(render(None))  # the header row, with BOM
        while True:
            indices = await asyncio.to_thread(self.repository.search, query, EXPORT_CHUNK)
            if not indices:
                break
            chunk = await asyncio.to_thread(self._rendered, indices, render, auditor.personal)
            await response.write(chunk)
            _call().rows += len(indices)
            if len(indices) < EXPORT_CHUNK:
                break
            query = dataclasses.replace(query, after=indices[-1])
        await response.write_eof()
        return response

    def _rendered(self, indices: Sequence[int], render: _Render, personal: bool) -> bytes:
        data = self.log.entries_at(indices)
        return render([records.view(i, records.decode(data[i]), personal) for i in indices])

    async def access_log(self, request: web.Request) -> web.Response:
        _auditor(request).require(OPERATOR)
        check_known(request.query, ("before", "limit"))
        before_text = value(request.query, "before")
        if before_text is not None and not _INDEX.fullmatch(before_text):
            raise InvalidInput("before must be a record id, a whole number")
        limit = parse_limit(value(request.query, "limit"), default=100, most=1000)
        _record_filter(request, {k: v for k, v in request.query.items() if v})
        before = int(before_text) if before_text is not None else None
        logged = await asyncio.to_thread(self.repository.access_log, before, limit)
        _call().rows = len(logged)
        return _json(
            {
                "records": [
                    {
                        "id": item.id,
                        "at": _time(item.record.at),
                        "who": item.record.who,
                        "role": item.record.role,
                        "action": item.record.action,
                        "filter": json.loads(item.record.filter or "{}"),
                        "rows": item.record.rows,
                        "status": item.record.status,
                    }
                    for item in logged
                ],
                "next_before": str(logged[-1].id) if len(logged) == limit else None,
            }
        )

    async def repair(self, request: web.Request) -> web.Response:
        """Credit repair of one penalty record (NDRC Order No. 36) by the local platform: the
        same rule and store call as `creditnode repair` (node.credit_repair)."""
        auditor = _auditor(request)
        check_known(request.query, ())
        record_id = repairs.check_record_id(request.match_info["record_id"])
        _record_filter(request, {"record": record_id})
        auditor.require(OPERATOR)
        body = await _body(request, repairs.MAX_BODY_BYTES)
        asked = repairs.parse_repair(record_id, body)
        _record_filter(request, {"record": record_id, "reason": records.mask_text(asked.reason)})
        try:
            reissued = await asyncio.to_thread(
                credit_repair.repair_record, self.store, record_id, asked.reason, self.clock
            )
        except RepairTooEarly as exc:
            _, status, reason, message = classify(exc)
            error = {"reason": reason, "message": message, "earliest": exc.earliest.isoformat()}
            return _json({"error": error}, status=status)
        _call().rows = len(reissued.replaced)
        return _json(
            {
                "record_id": record_id,
                "status": "REPAIRED",
                "reissued": [
                    {"old": old, "new": new} for old, new in sorted(reissued.replaced.items())
                ],
            }
        )

    # --- every API request ------------------------------------------------------------------

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Authenticate, map refusals to JSON, and record the request (the page and the API
        description are public: they hold no data)."""
        action = _ACTIONS.get(request.match_info.route.name or "")
        if action is None:
            return await handler(request)
        status = 500
        who, role = "-", "-"
        call = _Call()
        _CALL.set(call)
        try:
            auditor = await asyncio.to_thread(
                self.auditors.authenticate, request.headers.get("Authorization")
            )
            who, role = auditor.name, auditor.role
            call.auditor = auditor
            response = await handler(request)
            status = response.status
            return response
        except CreditNodeError as exc:
            _, status, reason, message = classify(exc)
            return _json({"error": {"reason": reason, "message": message}}, status=status)
        except web.HTTPException as exc:
            status = exc.status
            raise
        except Exception as exc:
            _, status, reason, message = classify(exc)
            return _json({"error": {"reason": reason, "message": message}}, status=status)
        finally:
            record = AccessRecord(
                at=self.clock.now(),
                who=who,
                role=role,
                action=action,
                filter=json.dumps(call.filter, ensure_ascii=False, sort_keys=True),
                rows=call.rows,
                status=status,
            )
            # Recorded even when the client went away mid-export (the task is cancelled).
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(asyncio.to_thread(self.repository.record_access, record))


@dataclasses.dataclass(slots=True)
class _Call:
    """One API request as the access log records it; the handlers fill it in."""

    auditor: Auditor | None = None
    filter: dict[str, str] = dataclasses.field(default_factory=dict)
    rows: int = 0


# Each request runs in its own task, and so in its own context.
_CALL: contextvars.ContextVar[_Call] = contextvars.ContextVar("audit_call")


def _call() -> _Call:
    return _CALL.get()


_ACTIONS = {
    "info": "info",
    "search": "search",
    "entry": "entry",
    "checkpoints": "checkpoints",
    "consistency": "consistency",
    "stats": "stats",
    "export": "export",
    "access_log": "access-log",
    "repair": "repair",
}
_Render = Callable[[Sequence[dict[str, Any]] | None], bytes]


def _auditor(request: web.Request) -> Auditor:
    auditor = _call().auditor
    assert auditor is not None, "the guard authenticated the request"
    return auditor


def _record_filter(request: web.Request, recorded: Mapping[str, str]) -> None:
    _call().filter = dict(recorded)


async def _body(request: web.Request, most: int) -> bytes:
    """The request's body, read no further than `most` + 1 bytes (the parser refuses more)."""
    body = bytearray()
    while len(body) <= most:
        chunk = await request.content.read(most + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(
        body, status=status, headers=_API_HEADERS, dumps=lambda o: json.dumps(o, ensure_ascii=False)
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _csv_renderer(encoding: str) -> _Render:
    def render(views: Sequence[dict[str, Any]] | None) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        if views is None:  # the header row, after the BOM (utf-8-sig)
            writer.writerow(records.FIELDS)
            return out.getvalue().encode(encoding)
        writer.writerows([view[f] for f in records.FIELDS] for view in views)
        return out.getvalue().encode(
            "utf-8" if encoding == "utf-8-sig" else encoding, errors="replace"
        )

    return render


def _ndjson(views: Sequence[dict[str, Any]] | None) -> bytes:
    assert views is not None
    return "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in views).encode("utf-8")


def application(service: AuditService) -> web.Application:
    """The auditor's routes; `service.start()` / `close()` run with the application."""
    app = web.Application(middlewares=[service.guard])
    api = [
        ("info", "/api/info", service.info),
        ("search", "/api/entries", service.search),
        ("entry", "/api/entries/{index}", service.entry),
        ("checkpoints", "/api/checkpoints", service.checkpoints),
        ("consistency", "/api/consistency", service.consistency),
        ("stats", "/api/stats", service.stats),
        ("export", "/api/export", service.export),
        ("access_log", "/api/access-log", service.access_log),
    ]
    for name, path, handler in api:
        app.router.add_get(path, handler, name=name)
    app.router.add_post("/api/records/{record_id}/repair", service.repair, name="repair")
    description = json.dumps(openapi.document(), ensure_ascii=False).encode("utf-8")

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=description, content_type="application/json")

    app.router.add_get("/api/openapi.json", openapi_json, name="openapi")
    app.router.add_get("/", _static_handler("index.html"), name="page")
    for name in _STATIC:
        app.router.add_get(f"/static/{name}", _static_handler(name))

    async def on_startup(app: web.Application) -> None:
        await service.start()

    async def on_cleanup(app: web.Application) -> None:
        await service.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def _static_handler(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = importlib.resources.files("node.audit").joinpath("static", name).read_bytes()
    content_type = _STATIC[name]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={**_PAGE_HEADERS, "Cache-Control": "no-cache"},
        )

    return handler
