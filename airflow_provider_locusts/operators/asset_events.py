"""What a swarm task's asset events say: the counts and where the outputs are.

A LocustsSwarmOperator with `outlets=[Asset(...)]` emits an asset event when it succeeds
(Airflow does that for any task). The event's `extra` is filled here, so that a DAG scheduled
on the asset, or a person reading the asset's events in the UI, sees how the swarm went
without reading XComs: small values only (counts and paths, never the id lists).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Asset

EXTRA_KEYS = ("swarm_id", "total", "succeeded_count", "failed_count", "output_dir", "manifest", "report")


def swarm_event_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The `extra` of the swarm task's asset events, from its summary."""
    return {"locusts": {key: summary.get(key) for key in EXTRA_KEYS}}


def annotate_outlet_events(context: Mapping[str, Any], outlets: Iterable[Any], summary: Mapping[str, Any]) -> None:
    """Add the swarm's figures to the event of each Asset among the task's outlets (asset
    aliases are left alone: what they resolve to is the DAG author's choice)."""
    assets = [outlet for outlet in outlets if isinstance(outlet, Asset)]
    if not assets:
        return
    events = context["outlet_events"]
    extra = swarm_event_extra(summary)
    for asset in assets:
        events[asset].extra.update(extra)
