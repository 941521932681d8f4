"""How a peer's result recognised on our scheme reads (issue 11 §4): side by side with the
peer's own for a person, and as JSON fields; used by `creditnode query`."""

from __future__ import annotations

import unicodedata

from node import model
from node.recognition import NOT_RECOGNISED, NotRecognised, RecognisedView

Recognised = RecognisedView | NotRecognised | None


def recognition_json(recognised: Recognised) -> dict[str, object]:
    """`recognised` (the view on our scheme, or null), `crosswalk` (its id@version; null for a
    result under our own scheme or none recognised) and `not_recognised` (why, or null)."""
    if isinstance(recognised, RecognisedView):
        view = {
            "scheme": recognised.scheme,
            "native_level": recognised.native_level,
            "level": recognised.level.name,
            "flags": list(recognised.flags),
        }
        return {
            "recognised": view,
            "crosswalk": recognised.crosswalk or None,
            "not_recognised": None,
        }
    reason = recognised.reason if isinstance(recognised, NotRecognised) else None
    return {"recognised": None, "crosswalk": None, "not_recognised": reason}


def recognition_lines(result: model.CreditResult, recognised: Recognised) -> list[str]:
    """The peer's result and ours side by side (scheme, level, score, flags) and the table used;
    or why it is not recognised. Nothing for a result kept before recognition existed."""
    if recognised is None:
        return []
    if isinstance(recognised, NotRecognised):
        return [f"{NOT_RECOGNISED}: {recognised.reason}"]
    score = f"{result.native_score:g}" if result.native_score is not None else "–"
    rows = [
        ("", f"peer {result.issuer_node}", f"here {result.audience_node}"),
        ("scheme", result.scheme, recognised.scheme),
        (
            "level",
            f"{result.native_level or '–'} (national {result.level.name})",
            f"{recognised.native_level} (national {recognised.level.name})",
        ),
        ("score", score, "–"),
        ("flags", " ".join(result.flags) or "–", " ".join(recognised.flags) or "–"),
    ]
    width = max(_width(peer) for _, peer, _ in rows) + 3
    lines = [f"{label:<8}{_pad(peer, width)}{ours}".rstrip() for label, peer, ours in rows]
    table = recognised.crosswalk or "none: the peer's scheme is ours"
    return [*lines, f"{'table':<8}{table}"]


def _width(text: str) -> int:
    """Columns `text` takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(width - _width(text), 1)
