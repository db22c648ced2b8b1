"""Old names kept importable after a rename: each use warns with a :class:`DeprecationWarning`.

Renamed modules (:data:`MOVED_MODULES`) stay importable under their old dotted names: importing one
warns and gives the new module itself (``import cradlekit.evaluate.metrics as m`` makes ``m`` the
module :mod:`cradlekit.evaluate.agreement`), through a finder that answers for exactly those names
and runs after Python's own (a file at an old path would win). The package's ``__getattr__``
(:func:`module_getattr`) gives the same modules as attributes (``ck.evaluate.metrics``) and renamed
functions under their old names (``ck.qc.pass_rate`` is :func:`cradlekit.qc.pass_fraction`).

An old name is the new object, not a copy, so it gives equal results by construction. Each old
name warns once per interpreter, on its first use, naming the replacement (after that the old name
is bound in its module, as an imported module is in ``sys.modules``); the warning is the only
message: nothing is logged.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from types import ModuleType
from typing import Any

__all__ = ["MOVED_MODULES", "warn_renamed", "module_getattr", "install_module_aliases"]

#: Old dotted module name -> new one (issue 22: one name per idea).
MOVED_MODULES: dict[str, str] = {
    "cradlekit.evaluate.metrics": "cradlekit.evaluate.agreement",
    "cradlekit.evaluate.normalize": "cradlekit.evaluate.log_normalize",
    "cradlekit.data.normalizers": "cradlekit.data.label_layouts",
    "cradlekit.module.normalization": "cradlekit.module.standardize",
    "cradlekit.qc.batches": "cradlekit.qc.sample_batches",
}


def warn_renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new``.

    ``stacklevel`` is :func:`warnings.warn`'s, called here: 2 points at this function's caller, 3
    (default) at the caller's caller, the user's line for a module ``__getattr__``.
    """
    warnings.warn(
        f"{old} is deprecated and will be removed: use {new} (same object, same results)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def module_getattr(module_name: str, renamed: Mapping[str, str] | None = None,
                   namespace: MutableMapping[str, Any] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) giving old names of ``module_name``.

    Parameters
    ----------
    module_name
        The module's ``__name__``; its moved submodules (keys of :data:`MOVED_MODULES` one level
        below it) are given as attributes: the new module, with a warning on first use.
    renamed
        Old attribute name -> new attribute name in ``namespace``; the first use of an old name
        warns and binds it in ``namespace``.
    namespace
        The module's ``globals()``, where the new names live (needed with ``renamed``).

    Returns
    -------
    Callable
        ``__getattr__(name)``, raising :class:`AttributeError` for any other name.
    """
    renamed = dict(renamed or {})

    def __getattr__(name: str) -> Any:
        old = f"{module_name}.{name}"
        if name in renamed and namespace is not None:
            warn_renamed(old, f"{module_name}.{renamed[name]}")
            value = namespace[name] = namespace[renamed[name]]  # bound: later uses do not warn again
            return value
        if old in MOVED_MODULES:
            warn_renamed(f"module {old}", f"module {MOVED_MODULES[old]}")
            with warnings.catch_warnings():  # warned above, at the user's line
                warnings.simplefilter("ignore", DeprecationWarning)
                return importlib.import_module(old)  # binds the attribute: later uses do not warn again
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of :data:`MOVED_MODULES` and loads each as its new module."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a plain placeholder; exec_module swaps the new module in

    def exec_module(self, module: ModuleType) -> None:
        old = module.__name__
        new = MOVED_MODULES[old]
        # stacklevel 3: past this method and importlib's own frames, the importing line
        warn_renamed(f"module {old}", f"module {new}", stacklevel=3)
        # the import system returns whatever sys.modules holds under the old name after loading
        sys.modules[old] = importlib.import_module(new)


def install_module_aliases() -> None:
    """Make the old module names importable (once; called by ``import cradlekit``)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
