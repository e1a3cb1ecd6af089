"""Modules imported on first use instead of with their importer: keeps heavy libraries (NumPy) off
the cold start of functions whose path never touches them (bench/coldstart.py measures it)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)
