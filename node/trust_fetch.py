"""Trust lists polled from the zone coordinator's URL (issue 14 §3), beside the `zones/` files.

`[zones.<zone>] trust_list_url` in node.toml names where the coordinator publishes the signed
list (`creditnode zone serve`, or any static file server). `fetch_trust_list` is one
conditional GET (If-None-Match / If-Modified-Since), bounded in size and time. The poller
offers every new body to the node's `TrustListFiles`: the same checks as a file (unsigned,
badly signed, expired, rolled back → refused, the last good list kept), the same floors; a
list taken is written to `zones/` as well, so a restart without the network starts from it.
An unreachable URL is logged once per kind of failure and tried again at the next poll; it is
never fatal. Plain HTTP is enough: the list is signed, and nothing else is trusted from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

import aiohttp

from node.clock import SYSTEM, Clock
from node.errors import ConfigError, CreditNodeError, PeerError, PeerUnavailable
from node.home import NodeHome
from node.trust_files import TrustListFiles

log = logging.getLogger(__name__)

URL_KEY = "trust_list_url"
MAX_URL_CHARS = 2048
MAX_TRUST_LIST_BYTES = 4 << 20  # a list of hundreds of members is a few hundred KiB
MAX_VALIDATOR_CHARS = 256  # an ETag or Last-Modified longer than this is not kept
FETCH_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 60.0  # a 304 costs the coordinator one small request per node and minute
UNREACHABLE = "TRUST_LIST_UNREACHABLE"
TOO_LARGE = "TRUST_LIST_TOO_LARGE"


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def check_url(url: object, where: str) -> str:
    """An http(s) URL of bounded length, or ConfigError naming `where` (the value cut short)."""
    if not isinstance(url, str):
        raise ConfigError(f"{where}: {URL_KEY} must be a string")
    parts = urllib.parse.urlsplit(url) if len(url) <= MAX_URL_CHARS else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or ord(c) < 0x20 for c in url)
    ):
        raise ConfigError(
            f"{where}: {URL_KEY} must be an http:// or https:// URL of at most {MAX_URL_CHARS} "
            f"characters, got {_shown(url)!r}"
        )
    return url


def trust_list_urls(document: Mapping[str, Any], source: str) -> dict[str, str]:
    """zone -> URL, from node.toml's `[zones.<zone>] trust_list_url` keys."""
    zones = document.get("zones", {})
    if not isinstance(zones, Mapping):
        raise ConfigError(f"{source}: zones must be a table of zones, [zones.<zone>]")
    return {
        zone: check_url(table[URL_KEY], f"{source}: [zones.{zone}]")
        for zone, table in zones.items()
        if isinstance(table, Mapping) and URL_KEY in table
    }


@dataclasses.dataclass(frozen=True)
class Validators:
    """What the server said identifies the body it sent (RFC 9110 §8.8): sent back, so an
    unchanged list costs a 304 and no body."""

    etag: str | None = None
    last_modified: str | None = None

    def request_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Validators:
        def kept(name: str) -> str | None:
            value = headers.get(name)
            return value if value and len(value) <= MAX_VALIDATOR_CHARS else None

        return cls(kept("ETag"), kept("Last-Modified"))


@dataclasses.dataclass(frozen=True)
class Fetched:
    body: bytes | None  # None: not modified since `validators` were sent
    validators: Validators


async def fetch_trust_list(
    session: aiohttp.ClientSession, url: str, validators: Validators = Validators()
) -> Fetched:
    """GET `url` conditionally. PeerUnavailable (reason TRUST_LIST_UNREACHABLE) when it cannot
    be reached or does not answer 200 or 304; PeerError (TRUST_LIST_TOO_LARGE) for a body over
    MAX_TRUST_LIST_BYTES, which is not read further."""
    try:
        async with session.get(
            url, headers=validators.request_headers(), max_redirects=3
        ) as response:
            if response.status == 304:
                return Fetched(None, validators)
            if response.status != 200:
                raise PeerUnavailable(
                    f"{_shown(url)} answered HTTP {response.status}", reason=UNREACHABLE
                )
            too_large = PeerError(
                f"{_shown(url)} sent more than {MAX_TRUST_LIST_BYTES} bytes; not a trust list",
                reason=TOO_LARGE,
            )
            if (response.content_length or 0) > MAX_TRUST_LIST_BYTES:
                raise too_large
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 << 10):
                body += chunk
                if len(body) > MAX_TRUST_LIST_BYTES:
                    raise too_large
            return Fetched(bytes(body), Validators.of(response.headers))
    except (aiohttp.ClientError, TimeoutError) as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        raise PeerUnavailable(f"cannot fetch {_shown(url)}: {why}", reason=UNREACHABLE) from None


@dataclasses.dataclass
class _UrlState:
    url: str
    validators: Validators = Validators()
    offered_sha256: str | None = None  # the last body offered: an unchanged one is not again
    failing: str | None = None  # the failure last logged, until the URL answers again


class TrustListPoller:
    """Polls each zone's `trust_list_url` (re-read from node.toml at every poll, so a changed
    URL needs no restart) and offers new lists to `files`."""

    def __init__(
        self,
        home: NodeHome,
        files: TrustListFiles,
        clock: Clock = SYSTEM,
        interval_s: float | None = None,
    ) -> None:
        self.home = home
        self.files = files
        self.clock = clock
        self.interval_s = POLL_INTERVAL_S if interval_s is None else interval_s
        # A bad URL stops the node from starting (ConfigError); later, it is logged instead.
        self._urls = trust_list_urls(home.load_document(), str(home.config_file))
        self._config_error: str | None = None
        self._state: dict[str, _UrlState] = {}
        self._unpinned_logged: set[str] = set()

    def urls(self) -> dict[str, str]:
        """The URLs in node.toml now; a file with a bad one is logged once and the URLs read
        before stay."""
        try:
            urls = trust_list_urls(self.home.load_document(), str(self.home.config_file))
        except CreditNodeError as exc:
            if exc.message != self._config_error:
                self._config_error = exc.message
                log.error("%s; polling the trust list URLs read before", exc.message)
            return self._urls
        self._config_error = None
        pinned = set(self.files.store.pinned_zones)
        for zone in sorted(set(urls) - pinned - self._unpinned_logged):
            self._unpinned_logged.add(zone)
            log.error(
                "[zones.%s] %s is set, but no coordinator key is pinned for the zone "
                "([trust.%s]): its lists cannot be checked, so it is not polled",
                zone,
                URL_KEY,
                zone,
            )
        self._urls = urls
        return {zone: url for zone, url in urls.items() if zone in pinned}

    async def poll(self) -> list[str]:
        """Fetch every zone's URL once; the zones whose list was replaced."""
        urls = self.urls()
        if not urls:
            return []
        updated = []
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for zone, url in sorted(urls.items()):
                if await self._poll_one(session, zone, url):
                    updated.append(zone)
        return updated

    async def _poll_one(self, session: aiohttp.ClientSession, zone: str, url: str) -> bool:
        state = self._state.get(zone)
        if state is None or state.url != url:
            state = self._state[zone] = _UrlState(url)
        try:
            fetched = await fetch_trust_list(session, url, state.validators)
        except PeerError as exc:
            if exc.message != state.failing:
                state.failing = exc.message
                log.warning(
                    "zone %s: %s; trying again in %gs, the list held stays",
                    zone,
                    exc.message,
                    self.interval_s,
                )
            return False
        if state.failing is not None:
            state.failing = None
            log.info("zone %s: %s answers again", zone, _shown(url))
        state.validators = fetched.validators
        if fetched.body is None:
            return False
        digest = hashlib.sha256(fetched.body).hexdigest()
        if digest == state.offered_sha256:
            return False  # a server without validators sent the same list again
        state.offered_sha256 = digest
        return await asyncio.to_thread(
            self.files.offer, zone, fetched.body, _shown(url, 200), self.clock.now()
        )

    async def run(self) -> None:
        """Poll now, then every `interval_s`, until cancelled."""
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("polling the trust list URLs failed; trying again")
            await asyncio.sleep(self.interval_s)
