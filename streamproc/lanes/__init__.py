"""The lanes between intake and the model workers: one bounded lane per camera, one segment of a
camera in flight at a time (`fair.py`)."""
from .fair import FairSegmentQueue, LanePolicy, SegmentLanes

__all__ = ["FairSegmentQueue", "LanePolicy", "SegmentLanes"]
