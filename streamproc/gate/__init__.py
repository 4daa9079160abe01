"""The scene-change gate: segments that show nothing new are not sent to the model (docs/gate.md).

numpy only: `score.py` (change between two frames), `gate.py` (one source's decisions),
`lanes.py` (its place between the segmenters and the lanes).
"""
from .gate import Decision, SceneGate
from .lanes import GatedLanes, SkippedSegment

__all__ = ["Decision", "GatedLanes", "SceneGate", "SkippedSegment"]
