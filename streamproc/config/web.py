"""Config of the web view on the service's HTTP port (`http:`, config/http.py)."""
from __future__ import annotations

from pydantic import Field

from .base import Section


class WebConfig(Section):
    enabled: bool = Field(True, description="serve the web view at / on the service's HTTP port (read-only)")
    control: bool = Field(False, description="allow pausing and resuming cameras from the page (needs http.api_key)")
