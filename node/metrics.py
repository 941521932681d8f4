"""Prometheus metrics of the node (one registry, the client library's default).

Counters only move forward; names follow Prometheus conventions (`_total`). `serve
--metrics-listen` exposes them over HTTP (node.admin_http), beside /healthz and /readyz.
"""

from __future__ import annotations

import importlib.metadata
import platform

from prometheus_client import Counter, Gauge, Histogram, Info

EXCHANGES = Counter(
    "creditnode_exchanges_total",
    "Exchanges logged, by direction, peer (the caller we answered, or the node we asked) and "
    "decision",
    ["direction", "peer", "decision"],
)
# Buckets around the 50 ms a query should take, up to a peer's 10 s deadline.
QUERY_SECONDS = Histogram(
    "creditnode_query_duration_seconds",
    "ANSWERED: from a call's arrival to its replies (per QueryCredit call, per group of a "
    "BatchQueryCredit stream); ASKED: from asking a peer to its verified, logged answer",
    ["direction"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
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
# Read from the store and the clock when /metrics is scraped (node.scrape_gauges): they hold
# across the processes that serve one city's log, and age between two commits.
LOG_SIZE = Gauge("creditnode_log_size", "Entries in the exchange log (its committed tree size)")
CHECKPOINT_AGE = Gauge(
    "creditnode_checkpoint_age_seconds",
    "Seconds since the latest checkpoint of the exchange log was signed",
)
WITNESS_COSIGNED_SIZE = Gauge(
    "creditnode_witness_cosigned_size",
    "The largest checkpoint size a witness has cosigned: log size minus this is how far behind",
    ["witness"],
)
WITNESS_COSIGNATURE_AGE = Gauge(
    "creditnode_witness_last_cosignature_age_seconds",
    "Seconds since a witness's last cosignature arrived",
    ["witness"],
)
TRUST_LIST_EXPIRES_IN = Gauge(
    "creditnode_trust_list_expires_in_seconds",
    "Seconds until the trust list held for a zone expires (negative once it has)",
    ["zone"],
)
BUILD = Info("creditnode_build", "The software this node runs: creditnode_build_info{version}")


def _version() -> str:
    try:
        return importlib.metadata.version("credit-interchange-node")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


BUILD.info({"version": _version(), "python": platform.python_version()})
