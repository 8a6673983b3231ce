"""Turn detectors: is the user's turn complete, judged from its audio."""

from __future__ import annotations

from harken.providers.turn.smart_turn import SmartTurn

__all__ = ["SmartTurn"]
