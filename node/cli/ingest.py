"""`creditnode ingest` and `creditnode gen-data`: bring a platform export into the store, and
make realistic synthetic exports to try it with.

ingest streams: the adapter reads the file a chunk of rows at a time and the store stages
them, then applies them in one transaction, so a rejected file leaves the store exactly as it
was and memory does not grow with the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pathlib
import sys

import click
from sqlalchemy.exc import DBAPIError
from tqdm import tqdm

from adapters.crosswalks import builtin_crosswalks
from adapters.problems import describe
from adapters.registry import ADAPTERS, ImportAdapter, format_listing, get_adapter
from adapters.schemes import builtin_schemes
from adapters.shuanggongshi import RECORD_FORMATS
from node.cli import exits
from node.cli.ingest_records import MAX_JOBS, default_jobs, ingest_records
from node.cli.options import home_option
from node.clock import SYSTEM, china_date
from node.errors import CreditNodeError, ImportRejected, RowProblem
from node.gendata import generate_export
from node.home import NodeHome
from node.keys import NodeKeys
from node.legacy_uscc import load_legacy_codes
from node.store import ImportSummary, Store
from node.store.results import MAX_PROBLEMS

MAX_PROBLEMS_SHOWN = MAX_PROBLEMS  # the store keeps as many; the rest are counted


def register(main: click.Group) -> None:
    main.add_command(ingest)
    main.add_command(gen_data)
    main.add_command(list_adapters)


@click.command()
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(sorted([*ADAPTERS, *RECORD_FORMATS])),
    help="The export's format (an import adapter, or a government format: "
    "shuanggongshi-cf-*, serious-dishonesty-*, shuanggongshi-xk-*).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1, max=64),
    default=None,
    help="Processes reading a large CSV export of penalties or list changes side by side "
    f"(default: the CPUs this process may use, at most {MAX_JOBS}); 1 reads it in one "
    "process, leaving the other cores to a node serving on the same machine.",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@home_option
def ingest(fmt: str, file: pathlib.Path, home: pathlib.Path, jobs: int | None) -> None:
    """Import a local platform export FILE into this node's results store.

    The file is read as a stream and every row is checked; if any is bad, the problems are
    listed (the first 1,000, then a count of the rest) and nothing is imported. Importing the
    same file again changes nothing.

    Rows count from 1 after the header (blank lines count too), for the file's problems and
    for the store's (an evaluation older than the one it holds) alike.

    A USCC with a wrong check character is a row problem unless the node's legacy-uscc.txt
    lists it (a known legacy register code).

    双公示 penalties and serious-dishonesty list changes go into the penalty records (the
    subjects' current results are re-issued with their flags); licences are checked and
    counted (adapters/shuanggongshi.md).
    """
    if fmt in RECORD_FORMATS:
        try:
            click.echo(ingest_records(fmt, file, home, jobs=jobs or default_jobs()))
        except ImportRejected as exc:
            _echo_problems(exc.problems, exc.more)
            raise click.ClickException(exc.message) from None
        except CreditNodeError:
            raise
        except Exception as exc:  # a driver's text quotes parameters, resident ids among them
            raise click.ClickException(
                f"the store failed while importing {file.name} with {_error_class(exc)}; "
                "nothing was imported"
            ) from None
        return
    node_home = NodeHome(home)
    config = node_home.load_config()
    subject_key = NodeKeys.open(node_home, config).subject_hmac_key()
    adapter = get_adapter(fmt)
    legacy_codes = load_legacy_codes(node_home)
    try:
        summary, rows = _ingest_streamed(
            node_home.db_url(config), adapter, file, config.node_id, subject_key, legacy_codes
        )
    except ImportRejected as exc:
        _echo_problems(exc.problems, exc.more)
        raise click.ClickException(exc.message) from None
    click.echo(
        f"imported {file.name} ({fmt}, {rows} rows) into {config.node_id}: "
        f"{summary.inserted} new, {summary.updated} updated, {summary.unchanged} unchanged"
    )


@click.command("adapters")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def list_adapters(as_json: bool) -> None:
    """List the import formats, the schemes and the crosswalks this software ships, each with
    its version and whether its table is an illustrative default or confirmed."""
    schemes = sorted(builtin_schemes().values(), key=lambda s: s.id)
    crosswalks = builtin_crosswalks().all()
    if as_json:
        listing = {
            "adapters": [
                {"name": name, "version": version, "description": description}
                for name, version, description in format_listing()
            ],
            "schemes": [
                {
                    "id": s.id,
                    "title": s.title,
                    "region": s.region,
                    "provenance": s.provenance,
                    "levels": [lv.name for lv in s.levels],
                }
                for s in schemes
            ],
            "crosswalks": [
                {
                    "id": c.id,
                    "zone": c.zone,
                    "from": c.source.id,
                    "to": c.target.id,
                    "version": c.version,
                    "provenance": c.provenance,
                }
                for c in crosswalks
            ],
        }
        click.echo(json.dumps(listing, ensure_ascii=False, indent=2))
        return
    click.echo("adapters (creditnode ingest --format NAME):")
    for name, version, description in format_listing():
        click.echo(f"  {name} v{version}  {description}")
    click.echo("schemes (id@version, issuing region, levels best first):")
    for scheme in schemes:
        region = scheme.region or "national"
        levels = " ".join(level.name for level in scheme.levels)
        click.echo(f"  {scheme.id}  {region}  {scheme.provenance}  {scheme.title}  [{levels}]")
    click.echo("crosswalks (zone/from→to@version):")
    for crosswalk in crosswalks:
        click.echo(f"  {crosswalk.id}  {crosswalk.provenance}")


@click.command("gen-data")
@click.option("--city", required=True, help="Issuing node id, e.g. cn-330500 (Huzhou).")
@click.option("--subjects", required=True, type=click.IntRange(min=0), help="Rows to write.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=pathlib.Path),
    help="File to write.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same file.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(ADAPTERS)),
    default="huzhou-csv",
    show_default=True,
    help="Export format to write.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The date (in China) on which the results are current  [default: today].",
)
@click.option(
    "--expired-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of results that expired before --as-of.",
)
def gen_data(
    city: str,
    subjects: int,
    out: pathlib.Path,
    seed: int,
    fmt: str,
    as_of: dt.datetime | None,
    expired_share: float,
) -> None:
    """Write a realistic synthetic platform export (valid USCCs and resident ids of the
    city's divisions, a plausible level mix, flags, green indicators). Same seed and
    --as-of, same file."""
    exits.check_out_path(out, "--out")
    day = as_of.date() if as_of is not None else china_date(SYSTEM.now())
    data = generate_export(city, subjects, seed, day, fmt, expired_share=expired_share)
    out.write_bytes(data)
    click.echo(
        f"wrote {subjects} subjects of {city} to {out} ({fmt}, {len(data):,} bytes, "
        f"current on {day.isoformat()})"
    )


def _ingest_streamed(
    url: str,
    adapter: ImportAdapter,
    file: pathlib.Path,
    issuer_node: str,
    subject_key: bytes,
    legacy_codes: frozenset[str],
) -> tuple[ImportSummary, int]:
    """Read `file` through `adapter` into a staged import, with a progress bar (rows/s and an
    ETA estimated from the bytes read) on a terminal; then apply it in one transaction.

    An error we did not word ourselves is shown by its class alone: a driver's or SQLAlchemy's
    text quotes the statement's parameters, resident ids among them."""
    size = file.stat().st_size
    shown = sys.stderr.isatty()
    try:
        with (
            file.open("rb") as stream,
            Store.open(url) as store,
            store.results.staged_import(source=str(file), fmt=adapter.name) as staged,
            tqdm(
                desc=f"reading {file.name}", unit=" rows", file=sys.stderr, disable=not shown
            ) as bar,
        ):
            file_sha256 = hashlib.file_digest(stream, "sha256").hexdigest()
            stream.seek(0)
            rows = 0
            chunks = adapter.read(
                stream,
                issuer_node=issuer_node,
                legacy_codes=legacy_codes,
                subject_key=subject_key,
                seen=staged,
            )
            for chunk in chunks:
                staged.add(chunk.records, chunk.problems)
                rows = chunk.rows_read
                if chunk.bytes_read:  # the rows the whole file holds, at this pace
                    bar.total = max(rows, round(rows * size / chunk.bytes_read))
                bar.update(rows - bar.n)
            bar.total = rows
            bar.refresh()
            if shown and not staged.problem_count:
                click.echo(f"importing {rows:,} rows in one transaction...", err=True)
            return staged.commit(file_sha256), rows
    except CreditNodeError:
        raise  # ImportRejected, Conflict, StoreUnavailable: written for the operator
    except Exception as exc:
        raise click.ClickException(
            f"the store failed while importing {file.name} with {_error_class(exc)}; the "
            "transaction was rolled back and nothing was imported"
        ) from None


def _error_class(exc: Exception) -> str:
    """`DataError (psycopg.errors.DataError)`: SQLAlchemy's class and the driver's beneath."""
    name = type(exc).__name__
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{name} ({type(exc.orig).__module__}.{type(exc.orig).__qualname__})"
    return name


def _echo_problems(problems: list[RowProblem], more: int) -> None:
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        click.echo(f"  {describe(problem)}", err=True)
    rest = len(problems) - MAX_PROBLEMS_SHOWN + more if len(problems) > MAX_PROBLEMS_SHOWN else more
    if rest:
        click.echo(f"  ... and {rest:,} more problems", err=True)
