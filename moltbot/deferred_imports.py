"""Modules a process imports but may never use are executed on first use, not at import.

Every Ray worker imports ``ray``, and ``ray`` imports at module level libraries that serve
features the tree never uses: ``requests`` (TPU metadata, the state API over HTTP),
``jsonschema`` (runtime-env plugin schemas), ``yaml`` (conda files, node-label files) and
``tqdm`` (progress bars). Together about 10 MB of unshared memory and 150 ms of CPU per process,
in every actor of the tree (issue 21: idle memory and start). With :func:`install`, importing
one of them binds a module object whose code has not run; the first attribute read the import
system does not itself do (``requests.get``, ``from yaml import safe_load``) runs it, under a
lock, and from then on it is the ordinary module. Nothing is lost: a process that uses one of
these pays the same, later.

Installed by ``actors/boot/sitecustomize.py`` in the tree's actor processes only (they get its
folder on ``PYTHONPATH``; ``MOLTBOT_DEFER_IMPORTS=0`` turns it off). Pure: no Ray here.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DEFERRED = ("requests", "jsonschema", "yaml", "tqdm")
SWITCH_ENV = "MOLTBOT_DEFER_IMPORTS"  # "0": off


class DeferredModule(types.ModuleType):
    """A module whose code has not run yet. The import system's own reads (``__spec__``,
    ``__path__``, ``__name__``) are in its ``__dict__`` and do not run it; any other missing
    attribute does (``__getattr__`` is only asked for what the dict lacks)."""

    def __getattr__(self, name: str) -> Any:
        _execute(self, name)
        return getattr(self, name)

    def __dir__(self) -> list[str]:
        _execute(self, "__dir__")
        return list(self.__dict__)


def _execute(module: types.ModuleType, wanted: str) -> None:
    """Run ``module``'s code once. Another thread asking meanwhile waits for it (its lock is
    the module's own, so two modules run at once never wait on each other); the running code
    asking for a name it has not yet bound gets the ``AttributeError`` a partly run module
    gives."""
    name = module.__name__
    deferring = _loaders[name]
    with deferring.lock:
        if type(module) is not DeferredModule:
            return  # another thread ran it while this one waited
        if name in _running:
            raise AttributeError(f"partially initialized module {name!r} has no {wanted!r}")
        real = deferring.real
        _running.add(name)
        try:
            if module.__spec__ is not None:
                module.__spec__.loader = real
            module.__loader__ = real
            real.exec_module(module)
        finally:
            _running.discard(name)
        module.__class__ = types.ModuleType  # type: ignore[assignment]  # narrowed above


class _DeferringLoader(importlib.abc.Loader):
    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real
        self.lock = threading.RLock()

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.real.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        _loaders[module.__name__] = self
        module.__class__ = DeferredModule


# the loader of each deferred module (by name): it still has its real loader and its lock
# after the module ran, when its spec and ``__loader__`` already name the real one
_loaders: dict[str, _DeferringLoader] = {}
_running: set[str] = set()


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None  # only plain source modules and packages: extension modules run now
        spec.loader = _DeferringLoader(spec.loader)
        return spec


RAY_WORKER_SCRIPT = "default_worker.py"  # what every Ray worker process runs


def switched_on(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` allows deferring (``MOLTBOT_DEFER_IMPORTS`` is not "0")."""
    return environ.get(SWITCH_ENV, "1") != "0"


def wanted(environ: Mapping[str, str], argv: Sequence[str]) -> bool:
    """Whether to defer in the process started with ``argv``: a Ray worker's (the tree's
    actors; not Ray's own agents and dashboard, nor ``ray start``, which run with the same
    ``PYTHONPATH``), unless ``environ`` turns it off (:func:`switched_on`)."""
    script = argv[0] if argv else ""
    return script.endswith("/" + RAY_WORKER_SCRIPT) and switched_on(environ)


def install(names: Iterable[str] = DEFERRED) -> bool:
    """Defer the named top-level modules in this process from now on (those not yet imported).
    Returns False, doing nothing, when it was already installed."""
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _Finder(frozenset(names)))
    return True


def is_deferred(name: str) -> bool:
    """True while ``name`` is imported but its code has not run."""
    return type(sys.modules.get(name)) is DeferredModule


def still_deferred(names: Iterable[str] = DEFERRED) -> list[str]:
    """Those of ``names`` imported but not yet run in this process, sorted."""
    return sorted(m for m in names if is_deferred(m))
