"""The demo shop's experiments: on each of its placements, personalised against a holdout.

``segue serve --demo`` and the temporary segue of ``segue demo`` run with these unless the
configuration has experiments of its own, so the KPI report (``GET /v1/reports/kpis``) shows
the personalised variant's lift over the holdout after a few minutes of traffic. Half of the
visitors are held out: a demo wants a clear answer quickly, where a shop would hold out a
tenth or less.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["DEMO_PLACEMENTS", "demo_config", "demo_experiments"]

DEMO_PLACEMENTS: Final = ("home_hero", "product_detail", "cart")


def demo_experiments() -> list[dict[str, Any]]:
    """The experiments as configuration (``segue.yaml``'s ``experiments``)."""
    return [
        {
            "name": f"{placement}_personalization",
            "placement": placement,
            "holdout": 0.5,
            "variants": [{"name": "personalized"}],
            # the simulated visitors buy within minutes of what they were shown
            "attribution_window_s": 1800.0,
        }
        for placement in DEMO_PLACEMENTS
    ]


def demo_config() -> str:
    """A ``segue.yaml`` with the demo's experiments (for the temporary segue)."""
    # JSON is YAML too: the demo stays a client that needs nothing but the standard library
    return json.dumps({"experiments": demo_experiments()}, indent=2)
