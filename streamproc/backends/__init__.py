"""Model backends (plug-ins): transformers (`hf`) and the native Sophgo engine (`tpu`)."""
from .base import (
    Backend,
    GenerationParams,
    Result,
    Timings,
    available_backends,
    backend_class,
    create_backend,
    register_backend,
)

__all__ = [
    "Backend",
    "GenerationParams",
    "Result",
    "Timings",
    "available_backends",
    "backend_class",
    "create_backend",
    "register_backend",
]
