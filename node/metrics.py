"""Prometheus metrics of the node (one registry, the client library's default).

Counters only move forward; names follow Prometheus conventions (`_total`). `serve
--metrics-listen` exposes them over HTTP (node.admin_http); the audit web app will serve them too.
"""

from __future__ import annotations

import importlib.metadata
import platform

from prometheus_client import Counter, Gauge, Histogram, Info

EXCHANGES = Counter(
    "creditnode_exchanges_total",
    "Exchanges logged, by direction and decision",
    ["direction", "decision"],
)
LOG_ENTRIES = Counter("creditnode_log_entries_total", "Entries committed to the exchange log")
LOG_BATCH_SIZE = Histogram(
    "creditnode_log_batch_entries",
    "Entries per group commit of the exchange log",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
WITNESS_COSIGNED = Counter(
    "creditnode_witness_cosignatures_total", "Cosignatures received from witnesses", ["witness"]
)
WITNESS_ALARMS = Counter(
    "creditnode_witness_alarms_total",
    "Witness refusals or bad cosignatures of our checkpoints: a possible split view",
    ["witness"],
)
WITNESS_UNREACHABLE = Counter(
    "creditnode_witness_unreachable_total",
    "Checkpoints a witness could not be reached for",
    ["witness"],
)
TRUST_LIST_IN_FORCE = Gauge(
    "creditnode_trust_list_in_force",
    "1 while a zone's trust list grants, 0 once it has expired (its members are then refused)",
    ["zone"],
)
TRUST_LIST_EXPIRES = Gauge(
    "creditnode_trust_list_expires_timestamp_seconds",
    "When the trust list held for a zone expires (Unix time): alert before it does",
    ["zone"],
)
CHANGEFEED_HEAD = Gauge(
    "creditnode_changefeed_head_seq",
    "The last seq of the Green Loan Link changefeed (the changes journal)",
)
CHANGEFEED_CONSUMER_SEQ = Gauge(
    "creditnode_changefeed_consumer_seq",
    "Per changefeed consumer: the last seq sent to it (its cursor when it connected, then "
    "each batch's last seq); head minus this is how far behind it is",
    ["consumer"],
)
BUILD = Info("creditnode_build", "The software this node runs: creditnode_build_info{version}")


def _version() -> str:
    try:
        return importlib.metadata.version("credit-interchange-node")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


BUILD.info({"version": _version(), "python": platform.python_version()})
