"""Run ids: the one format of the id every run is recorded under (the CLI's runs, the
worker's), and of the time stamps in file names. Standard library only."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping

#: the variable a run's id is handed down in: `refinery run` sets it for Snakemake, whose
#: jobs, aggregation and progress display all record the run under it
RUN_ID_ENV = "REFINERY_RUN_ID"
#: UTC (local time for stamp(utc=False)), sortable as text
STAMP_FORMAT = "%Y%m%dT%H%M%S"


def stamp(when: float | None = None, *, utc: bool = True) -> str:
    """`when` (now by default) as 20240131T235959."""
    return time.strftime(STAMP_FORMAT, time.gmtime(when) if utc else time.localtime(when))


def new_run_id(prefix: str = "") -> str:
    """A new run's id, `[prefix-]20240131T235959-1a2b3c` (UTC): ids sort by start time, and
    the random part keeps two runs started in one second apart."""
    return f"{prefix}-" * bool(prefix) + f"{stamp()}-{uuid.uuid4().hex[:6]}"


def current_run_id(env: Mapping[str, str] | None = None) -> str:
    """The id `refinery run` handed down (RUN_ID_ENV), else a new one."""
    return (os.environ if env is None else env).get(RUN_ID_ENV) or new_run_id()
