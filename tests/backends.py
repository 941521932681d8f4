"""The store backends every store test runs on: a SQLite file and a throwaway PostgreSQL."""

from __future__ import annotations

import pytest

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
