"""Where runs are stored: ``[storage]`` of a scenario."""

from __future__ import annotations

from engine.core.configs import ConfigStruct, positive

__all__ = ["StorageConfig"]


class StorageConfig(ConfigStruct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "sqlite:///runs/emarl.db"
    flush_every_bars: int = 10_000

    def check(self) -> None:
        positive("storage.flush_every_bars", self.flush_every_bars)
