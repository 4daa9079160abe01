"""Config of the web view on the service's HTTP port (service.metrics.host/port)."""
from __future__ import annotations

from typing import Optional

from pydantic import Field, SecretStr

from .base import Section


class WebConfig(Section):
    enabled: bool = Field(True, description="serve the web view at / on the service's HTTP port (read-only)")
    control: bool = Field(False, description="allow pausing and resuming cameras from the page")
    api_key: Optional[SecretStr] = Field(
        None, description="key that control requests must carry (Authorization: Bearer KEY); use ${ENV}"
    )
