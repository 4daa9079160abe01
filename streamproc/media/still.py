"""A still image read from a file (PNG, JPEG, ...) as an RGB array, with PyAV (no PIL needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def load_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; MediaError (one line, the path named) if it is not a readable image."""
    import av

    from ..errors import MediaError

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError, StopIteration) as error:
        raise MediaError(f"{path}: not a readable image ({getattr(error, 'strerror', None) or error})") from None
