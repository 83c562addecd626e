"""Lazy package attributes (PEP 562): a package lists ``{name: module}`` and imports the module on first access,
so that importing the package (e.g. for ``nnunet_tcup -h``) stays light."""

from __future__ import annotations

import importlib
from collections.abc import Callable, MutableMapping
from typing import Any


def lazy_exports(
    package_globals: MutableMapping[str, Any], exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for a package whose attribute ``name`` lives in module ``exports[name]``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            package_globals[name] = value
            return value
        raise AttributeError(f"module {package_globals['__name__']!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(list(package_globals) + list(exports))

    return __getattr__, __dir__
