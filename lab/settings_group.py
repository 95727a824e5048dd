"""A typed group of settings: a frozen dataclass whose fields are some of ExperimentSettings', by name and type.

`ExperimentSettings` (lab.config.settings) holds every setting and its default, once; a group repeats only the
names and types of its part, and `from_settings` copies them. tests/test_settings_types.py checks that every
setting is in exactly one group, with the same type.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

G = TypeVar("G", bound="SettingsGroup")


class SettingsGroup:
    @classmethod
    def from_settings(cls: type[G], settings: Any) -> G:
        """The group's fields, read from an ExperimentSettings (or any object with them)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})
