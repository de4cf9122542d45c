"""Shared helpers of the unit tests: the shipped registry, loaded once."""

from __future__ import annotations

from functools import cache

from core.registry import Registry, load_registry


@cache
def shipped_registry() -> Registry:
    """The registry that ships with the project (`core/registry.toml`)."""
    return load_registry()
