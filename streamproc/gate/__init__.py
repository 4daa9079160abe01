"""The scene-change gate: segments that show nothing new are not sent to the model (docs/gate.md).

numpy only: `score.py` (change between two frames), `gate.py` (one source's decisions),
`stage.py` (the gate as a stage of intake: Segment -> Segment | SkippedSegment).
"""
from .gate import Decision, SceneGate
from .stage import GateStage, SkippedSegment

__all__ = ["Decision", "GateStage", "SceneGate", "SkippedSegment"]
