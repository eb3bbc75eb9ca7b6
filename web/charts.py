"""Plotly figures for the dashboard, as JSON strings the page hands to the local plotly.js.

Columns go in as plain lists: plotly would encode numpy arrays as base64 typed arrays, which
the API's readers and the tests cannot read."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from . import stats
from .templating import duration_text

STATUS_COLORS = {
    "reused": "#7f8c8d", "fetched": "#3498db", "built": "#27ae60", "cached": "#16a085",
    "failed": "#c0392b", "missing": "#e67e22", "skipped": "#95a5a6", "invalid": "#8e44ad",
}
HEIGHT = 300
#: up to this many packages the duration chart has a bar per package; past it, a histogram
PER_PACKAGE_MAX = 25
#: a log axis once the slowest build takes this many times the fastest: a 40-minute build
#: beside 1-second ones leaves every bar but one a sliver on a linear axis
LOG_RATIO = 20
_TICKS = (0.1, 1, 10, 60, 600, 3600, 36000, 86400)


def _layout(fig: go.Figure, title: str, empty: bool = False, height: int = HEIGHT) -> str:
    # the title sits in a top margin of its own: nothing is drawn over it (the page hides
    # plotly's toolbar, which would cover it)
    fig.update_layout(
        title={"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left",
               "y": 1, "yanchor": "top", "pad": {"t": 12}},
        height=height, template="plotly_white",
        margin={"l": 50, "r": 20, "t": 48, "b": 40}, legend={"orientation": "h", "y": -0.2},
    )
    if empty:
        fig.add_annotation(text="no data yet", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font={"size": 14, "color": "#888"})
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig.to_json()


def outcomes_over_time(df: pd.DataFrame) -> str:
    data = stats.outcomes_over_time(df)
    fig = go.Figure()
    for status, grp in data.groupby("status"):
        fig.add_bar(x=grp["bucket"].astype(str).tolist(), y=grp["count"].tolist(), name=str(status),
                    marker_color=STATUS_COLORS.get(str(status)))
    fig.update_layout(barmode="stack")
    return _layout(fig, "Outcomes over time", data.empty)


def duration_axis(durations: list[float]) -> dict:
    """An x axis in seconds labelled as durations; logarithmic when they span a wide range."""
    lo, hi = max(min(durations), 0.1), max(max(durations), 0.1)
    if hi / lo < LOG_RATIO:
        return {"title": {"text": "seconds"}, "rangemode": "tozero"}
    ticks = [t for t in _TICKS if lo / 2 <= t <= hi * 4]
    # no axis title: the ticks say "10 s", "1 h", and the legend goes where a title would
    return {"type": "log", "tickvals": ticks, "ticktext": [_short(t) for t in ticks],
            "tickangle": 0,
            # room on the right for the value printed past each bar
            "range": [math.log10(lo / 2), math.log10(hi * 4)]}


def _short(seconds: float) -> str:
    """Tick labels: 30 s, 5 min, 2 h."""
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def _durations_per_package(latest: pd.DataFrame) -> str:
    """A bar per package (its newest build), coloured by how that build ended: with a few
    values, a histogram's 30 bins are mostly empty and the rest slivers."""
    fig = go.Figure()
    for status, grp in latest.groupby("status", sort=False):
        texts = [duration_text(d) for d in grp["duration"]]
        fig.add_bar(y=grp["package"].tolist(), x=grp["duration"].tolist(), orientation="h",
                    name=str(status), marker_color=STATUS_COLORS.get(str(status)),
                    text=texts, textposition="outside", cliponaxis=False, customdata=texts,
                    hovertemplate="%{y}: %{customdata}<extra>%{fullData.name}</extra>")
    fig.update_layout(
        barmode="overlay", xaxis=duration_axis(latest["duration"].tolist()),
        yaxis={"categoryorder": "array", "categoryarray": latest["package"].tolist(),
               "automargin": True, "dtick": 1},
        margin={"l": 50, "r": 20, "t": 48, "b": 40},
    )
    height = max(HEIGHT, 110 + 18 * len(latest))
    return _layout(fig, "Build duration per package (latest build)", height=height)


def duration_bins(durations: list[float], most: int = 20) -> list[float]:
    """Bin edges for a histogram of durations: about sqrt(n) bins, log-spaced when the values
    span a wide range (builds take seconds to hours), so each bin holds comparable builds."""
    lo, hi = max(min(durations), 0.1), max(max(durations), 0.1)
    count = int(min(most, max(4, math.ceil(math.sqrt(len(durations))))))
    if hi / lo < 1.5:
        lo, hi = lo * 0.8, hi * 1.25
    if hi / lo >= LOG_RATIO:
        return np.geomspace(lo, hi * 1.0001, count + 1).tolist()
    return np.linspace(max(0.0, lo * 0.999), hi * 1.0001, count + 1).tolist()


def _durations_binned(builds: pd.DataFrame) -> str:
    """Many packages: how many builds took how long, in bins labelled by their range."""
    values = builds["duration"].clip(lower=0.1)
    edges = duration_bins(values.tolist())
    labels = [f"{duration_text(a)}–{duration_text(b)}" for a, b in zip(edges, edges[1:],
                                                                            strict=False)]
    fig = go.Figure()
    for status, grp in builds.assign(duration=values).groupby("status", sort=False):
        counts, _ = np.histogram(grp["duration"], bins=edges)
        fig.add_bar(x=labels, y=counts.tolist(), name=str(status),
                    marker_color=STATUS_COLORS.get(str(status)))
    fig.update_layout(barmode="stack", yaxis_title="builds",
                      xaxis={"categoryorder": "array", "categoryarray": labels,
                             "tickangle": -30})
    return _layout(fig, f"Build duration distribution ({len(values)} builds)")


def duration_distribution(df: pd.DataFrame) -> str:
    latest = stats.latest_build_durations(df)
    if latest.empty:
        return _layout(go.Figure(), "Build durations", True)
    if len(latest) <= PER_PACKAGE_MAX:
        return _durations_per_package(latest)
    return _durations_binned(stats.build_durations(df))


def failure_rate(df: pd.DataFrame) -> str:
    data = stats.failure_rate(df)
    fig = go.Figure()
    if not data.empty:
        fig.add_bar(x=data["package"].tolist(), y=(data["rate"] * 100).round(1).tolist(),
                    marker_color="#c0392b", customdata=data[["failures", "builds"]].values.tolist(),
                    hovertemplate="%{x}: %{customdata[0]} of %{customdata[1]} builds failed"
                    "<extra></extra>")
        fig.update_layout(yaxis_title="% failed", yaxis_range=[0, 100])
    return _layout(fig, "Failure rate by package", data.empty)


def variant_success(df: pd.DataFrame) -> str:
    data = stats.variant_success(df)
    fig = go.Figure()
    if not data.empty:
        fig.add_bar(x=data["variant"].tolist(), y=data["successes"].tolist(), name="succeeded",
                    marker_color="#27ae60")
        fig.add_bar(x=data["variant"].tolist(), y=(data["attempts"] - data["successes"]).tolist(),
                    name="failed",
                    marker_color="#c0392b")
        fig.update_layout(barmode="stack", yaxis_title="attempts")
    return _layout(fig, "Variant success", data.empty)


def queue_depth(depth: int, by_package: dict[str, int]) -> str:
    fig = go.Figure()
    fig.add_indicator(mode="number", value=depth, title={"text": "queued retries"},
                      domain={"x": [0, 0.35], "y": [0, 1]})
    if by_package:
        fig.add_bar(x=list(by_package), y=list(by_package.values()), marker_color="#2980b9",
                    xaxis="x", yaxis="y")
        fig.update_layout(xaxis={"domain": [0.45, 1]}, yaxis={"dtick": 1})
    else:
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return _layout(fig, "Queue depth")


def history_charts(df: pd.DataFrame) -> dict[str, str]:
    """The dashboard's charts of the history (the page caches them per history state)."""
    return {
        "outcomes": outcomes_over_time(df),
        "durations": duration_distribution(df),
        "failure-rate": failure_rate(df),
        "variants": variant_success(df),
    }


def dashboard(df: pd.DataFrame, depth: int, by_package: dict[str, int]) -> dict[str, str]:
    return {**history_charts(df), "queue": queue_depth(depth, by_package)}
