"""Route: each input runs with its own partition's demos, or its specialist, under one merged
instruction (``router``), with the demos of the partition's pool nearest to it (``nearest``); after the
merge, what is returned: one merged program or a routed one (``choose``)."""

from dspy_fgo.route.router import ROUTED_DEMOS, DemoRoute, RoutePlan, Routed, Router, load_routed

__all__ = ["ROUTED_DEMOS", "DemoRoute", "RoutePlan", "Routed", "Router", "load_routed"]
