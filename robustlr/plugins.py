"""The user's own code, named by an import path ``"package.module:attribute"``.

Models and datasets both accept such a path; this module resolves it once, with one error
style (the field, the path and why it failed), so a typo is exit 2 before a run starts.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

from robustlr.spec import SpecError

PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PluginError(SpecError):
    """An import path that does not resolve, or a factory that fails; one line for the user
    (a :class:`SpecError`, so config validation reports it beside every other spec)."""


def is_import_path(name: str) -> bool:
    return bool(PATH.match(name.strip()))


def resolve(path: str, *, field: str) -> Callable[..., Any]:
    """The callable ``path`` names ("package.module:factory", dotted attributes allowed)."""
    if not is_import_path(path):
        raise PluginError(f"{field}: {path!r} is not an import path of the form "
                          "'package.module:factory'")
    module_name, attribute = path.strip().split(":", 1)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise PluginError(f"{field}: cannot import module {module_name!r} ({error}); is it on "
                          "PYTHONPATH?") from None
    except Exception as error:  # the user's module raised while importing
        raise PluginError(f"{field}: importing {module_name!r} raised "
                          f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise PluginError(f"{field}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise PluginError(f"{field}: {path!r} is not callable (a factory function or class)")
    return target


def accepted(factory: Callable[..., Any]) -> tuple[set[str], bool]:
    """The keyword names ``factory`` takes, and whether it also takes ``**kwargs``."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: accept anything
        return set(), True
    names = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)


def call(factory: Callable[..., Any], kwargs: dict[str, Any], context: dict[str, Any], *,
         field: str) -> Any:
    """``factory(**kwargs)`` plus each ``context`` value it names (never through ``**kwargs``)
    that the user did not set;
    an unknown keyword or an exception is a one-line error naming ``field``."""
    names, anything = accepted(factory)
    unknown = [key for key in kwargs if key not in names and not anything]
    if unknown:
        raise PluginError(f"{field}: unknown parameter {unknown[0]!r}; allowed: "
                          f"{', '.join(sorted(names)) or 'none'}")
    full = {**{k: v for k, v in context.items() if k in names and k not in kwargs},
            **kwargs}
    try:
        return factory(**full)
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else ""
        raise PluginError(f"{field}: the factory raised {type(error).__name__}: {message}") from None


# --- factories named in files: imported only when the caller trusts them -------------------

ZOOS = ("torchvision", "timm")
"""Model families whose names map to a fixed table of constructors (never an arbitrary import)."""
DOWNLOADS = frozenset({"weights", "weights_backbone", "pretrained", "pretrained_cfg",
                       "pretrained_cfg_overlay", "checkpoint_path", "cache_dir"})
"""Zoo options that fetch or read further files: a spec read from a file may not set them."""


class UntrustedFactory(PluginError):
    """A spec read from a file (checkpoint metadata, a sidecar) names code the caller did not
    choose: one line naming what it would import, exit 2."""


def trusted_set(trust: Any, *, field: str = "trust") -> frozenset[str]:
    """The import paths the caller trusts, each checked to be one ('pkg.mod:Factory')."""
    names = [trust] if isinstance(trust, str) else list(trust or ())
    for name in names:
        if not isinstance(name, str) or not is_import_path(name):
            raise PluginError(f"{field}: {name!r} is not an import path of the form "
                              "'package.module:factory'")
    return frozenset(name.strip() for name in names)


def require_trusted(name: str, params: Any, trust: frozenset[str], *, where: str,
                    zoos: tuple[str, ...] = ()) -> None:
    """Refuse ``name`` (read from a file) unless it is a registry name (no colon), a family in
    ``zoos`` without download options, or an import path the caller trusts. Nothing is
    imported here: the check comes before any import the name would cause."""
    if ":" not in name or name.strip() in trust:
        return
    prefix = name.partition(":")[0]
    if prefix in zoos:
        asked = sorted(key for key, _ in params if key in DOWNLOADS)
        if asked:
            raise UntrustedFactory(f"{where}: model {name!r} sets {asked[0]!r}, which fetches or "
                                   "reads other files; a spec read from a file may not (pass "
                                   f"--trust-factory {name} if you trust it)")
        return
    module, _, attribute = name.partition(":")
    raise UntrustedFactory(f"{where}: names the factory {name!r}; loading it would import "
                           f"{module!r} and call {attribute!r}; refused (pass --trust-factory "
                           f"{name}, or trust=[{name!r}], if you trust that code)")
