"""The states of a source and the moves allowed between them (in the manner of Roboflow's
StreamState): a move the table does not allow is a bug, logged where it happens."""
from __future__ import annotations

import enum
import logging

log = logging.getLogger(__name__)


class SourceState(str, enum.Enum):
    """A str enum: statuses go into JSON (stats, events) as their plain values."""

    IDLE = "idle"  # made, not started
    CONNECTING = "connecting"  # opening (a first attempt, or again before ever being online)
    ONLINE = "online"  # frames coming
    RECONNECTING = "reconnecting"  # dropped (or the intake stage restarts); trying again
    FINISHED = "finished"  # a file read to its end
    FAILED = "failed"  # gave up, or cannot be read
    STOPPED = "stopped"  # the service (or cluster mode) stopped it

    @property
    def ended(self) -> bool:
        return self in _ENDED

    def may_become(self, new: "SourceState") -> bool:
        return new in _ALLOWED[self]


_ENDED = frozenset((SourceState.FINISHED, SourceState.FAILED, SourceState.STOPPED))
_LIVE = frozenset((SourceState.CONNECTING, SourceState.ONLINE, SourceState.RECONNECTING)) | _ENDED
_ALLOWED: dict[SourceState, frozenset[SourceState]] = {
    SourceState.IDLE: _LIVE,
    SourceState.CONNECTING: _LIVE,
    SourceState.ONLINE: _LIVE,
    SourceState.RECONNECTING: _LIVE,
    SourceState.FINISHED: frozenset((SourceState.STOPPED,)),  # a finished file is also stopped at the end
    SourceState.FAILED: frozenset((SourceState.STOPPED,)),
    SourceState.STOPPED: frozenset(),
}


def checked_move(name: str, old: SourceState, new: SourceState) -> SourceState:
    """`new`, after logging a move the table does not allow (it still happens: the source says so)."""
    if old is not new and not old.may_become(new):
        log.error("%s: source state moved from %s to %s, which is not an allowed move", name, old.value, new.value)
    return new
