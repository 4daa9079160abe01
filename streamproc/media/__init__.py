"""Encoders shared by the plug-ins (MQTT snapshots, the web view, alert attachments) and the
OpenAI API's tests and benches: JPEG stills (`jpeg.py`) and MP4 clips (`clips.py`), with PyAV."""
from .jpeg import encode_jpeg

__all__ = ["encode_jpeg"]
