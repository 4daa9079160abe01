"""streamproc: cameras and video files to text events with Qwen2.5-VL on Sophgo TPUs or transformers."""
from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
