"""Plotly figures for the dashboard, as JSON strings the page hands to the local plotly.js.

Columns go in as plain lists: plotly would encode numpy arrays as base64 typed arrays, which
the API's readers and the tests cannot read."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from . import stats

STATUS_COLORS = {
    "reused": "#7f8c8d", "fetched": "#3498db", "built": "#27ae60", "cached": "#16a085",
    "failed": "#c0392b", "missing": "#e67e22", "skipped": "#95a5a6", "invalid": "#8e44ad",
}


def _layout(fig: go.Figure, title: str, empty: bool = False) -> str:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}}, height=300, template="plotly_white",
        margin={"l": 50, "r": 20, "t": 40, "b": 40}, legend={"orientation": "h", "y": -0.2},
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


def duration_distribution(df: pd.DataFrame) -> str:
    data = stats.build_durations(df)
    fig = go.Figure()
    for status, grp in data.groupby("status"):
        fig.add_histogram(x=grp["duration"].tolist(), name=str(status), nbinsx=30, opacity=0.8,
                          marker_color=STATUS_COLORS.get(str(status)))
    fig.update_layout(barmode="overlay", xaxis_title="seconds", yaxis_title="builds")
    return _layout(fig, "Build duration distribution", data.empty)


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


def dashboard(df: pd.DataFrame, depth: int, by_package: dict[str, int]) -> dict[str, str]:
    return {
        "outcomes": outcomes_over_time(df),
        "durations": duration_distribution(df),
        "failure-rate": failure_rate(df),
        "variants": variant_success(df),
        "queue": queue_depth(depth, by_package),
    }
