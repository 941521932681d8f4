"""A zone coordinator's HTTP endpoint for its signed trust lists (issue 14 §3).

`GET /<zone>.trustlist.json` answers the file of that name in one directory, where `creditnode
zone sign --out` writes it (atomically, so a request never sees half a list). Each answer
carries a strong ETag (the SHA-256 of the bytes) and Last-Modified, and a matching
If-None-Match or If-Modified-Since gets 304 with no body. Nothing else is served: no listing,
no other name. Plain HTTP is enough, since members check the coordinator's signature; put it
behind an HTTPS proxy where the network asks for one. Any static file server that sends an
ETag or Last-Modified serves the same directory as well.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import os
import pathlib
import re

from aiohttp import web

LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\.trustlist\.json\Z")
CONTENT_TYPE = "application/json"


@dataclasses.dataclass(frozen=True)
class _Published:
    stamp: tuple[int, int, int]
    body: bytes
    etag: str
    last_modified: str


class TrustListDirectory:
    """The lists in `root`, each read again only when its file changed (mtime, size, inode)."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self._cache: dict[str, _Published] = {}

    def get(self, name: str) -> _Published | None:
        if not LIST_NAME.match(name):
            return None
        path = self.root / name
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            cached = self._cache.get(name)
            if cached is not None and cached.stamp == stamp:
                return cached
            body = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        published = _Published(
            stamp,
            body,
            f'"{hashlib.sha256(body).hexdigest()}"',
            email.utils.formatdate(st.st_mtime, usegmt=True),
        )
        self._cache[name] = published
        return published


def _not_modified(request: web.Request, published: _Published) -> bool:
    """RFC 9110 §13.1.1-2: If-None-Match decides when present; else If-Modified-Since."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or published.etag in tags
    since = request.if_modified_since
    if since is None:
        return False
    modified = email.utils.parsedate_to_datetime(published.last_modified)
    return modified <= since


def application(root: pathlib.Path) -> web.Application:
    """The aiohttp application serving the lists in `root`."""
    directory = TrustListDirectory(root)

    async def trust_list(request: web.Request) -> web.StreamResponse:
        published = directory.get(request.match_info["name"])
        if published is None:
            raise web.HTTPNotFound(text="no such trust list\n")
        headers = {
            "ETag": published.etag,
            "Last-Modified": published.last_modified,
            "Cache-Control": "no-cache",  # caches ask again: a new version is news
        }
        if _not_modified(request, published):
            return web.Response(status=304, headers=headers)
        return web.Response(body=published.body, content_type=CONTENT_TYPE, headers=headers)

    app = web.Application()
    app.router.add_get("/{name}", trust_list)
    return app


async def start(root: pathlib.Path, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `root` on host:port (0: any free port); the runner (to clean up) and the port."""
    runner = web.AppRunner(application(root), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])
