"""Panel settings: one frozen object built from flags and environment, handed to routes through
a FastAPI dependency (so tests swap it for their own)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from refinery_lib.retry_queue import QUEUE_FILE, RetryQueue
from refinery_lib.retry_worker import WorkerConfig

from .security import parse_origins


@dataclass(frozen=True)
class PanelSettings:
    db_path: Path
    queue_path: Path
    logs_dir: Path
    token: str = ""
    hints_path: Path | None = None
    webhook_url: str = ""
    worker: WorkerConfig | None = None
    autorun_interval: float = 0.0
    package_manager: str = "dnf"
    # origins besides the panel's own that may change things (a proxy's public name)
    allowed_origins: tuple[str, ...] = ()
    # accept changes without WORKER_TOKEN on other than loopback (refinery serve's flag)
    insecure_no_token: bool = False

    @property
    def auth_required(self) -> bool:
        return bool(self.token)

    @property
    def queue(self) -> RetryQueue:
        return RetryQueue(self.queue_path)

    @property
    def worker_mode(self) -> str:
        """webhook (a remote worker service), local (in this process) or none."""
        if self.webhook_url:
            return "webhook"
        return "local" if self.worker else "none"

    @classmethod
    def from_env(
        cls,
        db: Path | str | None = None,
        queue_path: Path | str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> PanelSettings:
        env = os.environ if environ is None else environ
        cache = Path(env.get("WORKER_CACHE") or "/cache")
        db_path = Path(db or env.get("HISTORY_DB") or cache / "history.db")
        # the queue and logs live beside the history database, in the cache folder
        queue = Path(queue_path or env.get("RETRY_QUEUE_PATH") or db_path.parent / QUEUE_FILE)
        logs = Path(env.get("REFINERY_LOGS_DIR") or db_path.parent / "logs")
        hints = env.get("REFINERY_HINTS")
        try:
            interval = float(env.get("WORKER_AUTORUN_INTERVAL") or 0)
        except ValueError:
            interval = 0.0
        return cls(
            db_path=db_path,
            queue_path=queue,
            logs_dir=logs,
            token=env.get("WORKER_TOKEN", ""),
            hints_path=Path(hints) if hints else None,
            webhook_url=env.get("WORKER_WEBHOOK_URL", ""),
            worker=WorkerConfig.from_env(env, queue_path=queue, history_db=db_path),
            autorun_interval=max(0.0, interval),
            package_manager=env.get("REFINERY_PACKAGE_MANAGER") or default_package_manager(),
            allowed_origins=parse_origins(env.get("PANEL_ALLOWED_ORIGINS", "")),
            insecure_no_token=env.get("PANEL_INSECURE_NO_TOKEN", "") == "1",
        )


def default_package_manager() -> str:
    """Which of a hint's package lists to pre-fill a retry with: apt on Debian-like builders."""
    return "apt" if shutil.which("apt-get") and not shutil.which("dnf") else "dnf"
