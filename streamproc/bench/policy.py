"""The urgency policy as `bench capacity` simulates it: the service's own (streamproc/urgency.py),
re-exported here so the simulator and the service read one description."""
from __future__ import annotations

from ..urgency import OLD, URGENT, Order, Policy, RulesMode, Urgency, replace, urgency

__all__ = ["OLD", "URGENT", "Order", "Policy", "RulesMode", "Urgency", "replace", "urgency"]
