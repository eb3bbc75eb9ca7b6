"""Aggregations of the history for charts and package pages (pandas over one read of it)."""

from __future__ import annotations

import pandas as pd

from refinery_lib.history import ChartEvent, History

OUTCOMES = ("reused", "fetched", "built", "cached", "failed", "missing", "skipped", "invalid")
_COLUMNS = list(ChartEvent._fields)


def events_frame(history: History, package: str | None = None, limit: int = 50_000) -> pd.DataFrame:
    """The newest `limit` events with the metadata fields the charts need, as columns."""
    df = pd.DataFrame(history.chart_events(package, limit), columns=_COLUMNS)
    df["duration"] = pd.to_numeric(df["duration"], errors="coerce")
    df["when"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    return df


def packages_by_status(history: History) -> dict[str, int]:
    """How many packages are in each state now: per package, its newest outcome's status.

    Counting events instead would say "5 attempt, 1 built, 2 failed" for two packages: every
    attempt, rebuild and reuse is an event. These numbers add up to the number of packages;
    a package with only attempt (or system_recipe) events so far is "pending".
    """
    return history.packages_by_status(OUTCOMES)


def outcomes_over_time(df: pd.DataFrame) -> pd.DataFrame:
    """Outcome counts per status per day (per hour when the history spans under two days)."""
    out = df[df["status"].isin(OUTCOMES)]
    if out.empty:
        return pd.DataFrame(columns=["bucket", "status", "count"])
    span = out["ts"].max() - out["ts"].min()
    freq = "h" if span < 2 * 86400 else "D"
    bucket = out["when"].dt.floor(freq).dt.tz_localize(None)
    counts = out.assign(bucket=bucket).groupby(["bucket", "status"]).size()
    return counts.rename("count").reset_index()


def build_durations(df: pd.DataFrame) -> pd.DataFrame:
    """Every real build with a duration (cached/attempt events repeat one), oldest first."""
    builds = df[df["status"].isin(["built", "failed"]) & df["duration"].notna()]
    return builds[["ts", "package", "status", "duration"]].sort_values("ts", kind="stable")


def latest_build_durations(df: pd.DataFrame) -> pd.DataFrame:
    """Per package its newest build's duration and status, fastest first."""
    builds = build_durations(df)
    latest = builds.groupby("package", sort=False).tail(1)
    return latest.sort_values(["duration", "package"]).reset_index(drop=True)


def failure_rate(df: pd.DataFrame, limit: int = 15) -> pd.DataFrame:
    """Per package: builds, failures and failed share, most failures first."""
    builds = df[df["status"].isin(["built", "failed"])]
    if builds.empty:
        return pd.DataFrame(columns=["package", "builds", "failures", "rate"])
    failed = builds["status"].eq("failed")
    g = failed.groupby(builds["package"])
    table = pd.DataFrame({"builds": g.size(), "failures": g.sum()})
    table["rate"] = table["failures"] / table["builds"]
    table = table.sort_values(["failures", "rate"], ascending=False).head(limit)
    return table.reset_index()


def _attempt_outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """One row per build attempt with `ok`; from built/failed events where no attempts exist."""
    attempts = df[df["status"] == "attempt"].copy()
    if not attempts.empty:
        flagged = attempts["success"].notna()
        attempts["ok"] = attempts["detail"].eq("succeeded")
        attempts.loc[flagged, "ok"] = attempts.loc[flagged, "success"].astype(bool)
        return attempts
    builds = df[df["status"].isin(["built", "failed"])].copy()
    builds["ok"] = builds["status"].eq("built")
    return builds


def variant_success(df: pd.DataFrame) -> pd.DataFrame:
    att = _attempt_outcomes(df)
    att = att[att["variant"].notna()]
    if att.empty:
        return pd.DataFrame(columns=["variant", "attempts", "successes", "rate"])
    g = att.groupby("variant")["ok"]
    table = pd.DataFrame({"attempts": g.size(), "successes": g.sum().astype(int)})
    table["rate"] = table["successes"] / table["attempts"]
    return table.reset_index()


def variant_history(df: pd.DataFrame) -> list[dict]:
    """A package's variants: attempts, successes, failures, average duration, last result."""
    att = _attempt_outcomes(df)
    att = att[att["variant"].notna()]
    rows = []
    for variant, grp in att.groupby("variant"):
        last = grp.sort_values("ts").iloc[-1]
        dur = grp["duration"].mean()
        rows.append({
            "variant": variant,
            "attempts": int(len(grp)),
            "successes": int(grp["ok"].sum()),
            "failures": int((~grp["ok"].astype(bool)).sum()),
            "avg_duration": None if pd.isna(dur) else float(dur),
            "last_ok": bool(last["ok"]),
            "last_ts": float(last["ts"]),
        })
    return sorted(rows, key=lambda r: -r["last_ts"])
