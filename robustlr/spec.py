"""One grammar for everything pluggable: schedules, regimes, attacks, poisons, filters.

A spec is ``name``, ``name(key=value, ...)`` in a string, or a mapping
``{name: ..., key: value}``. Values are numbers (``8/255`` is allowed), booleans, strings
(quoted, or a bare word), and lists of those. One parser, one :class:`Registry` per kind, one
error style: every problem is a :class:`SpecError` that names the kind, the entry, the
parameter and what is allowed.
"""

from __future__ import annotations

import ast
import inspect
import operator
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from robustlr.errors import InputError


class SpecError(InputError):
    """A spec that cannot be parsed or built; the message is one line meant for the user."""


@dataclass(frozen=True)
class Spec:
    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        inner = ", ".join(f"{key}={_format_value(value)}" for key, value in self.params)
        return f"{self.name}({inner})"


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value.isidentifier() else repr(value)
    return repr(value)


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}


def _literal(node: ast.AST, text: str) -> Any:
    """Evaluate the small, safe subset of Python a spec value may use."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    if isinstance(node, ast.Name):
        return {"true": True, "false": False, "none": None}.get(node.id.lower(), node.id)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(element, text) for element in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand, text)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _literal(node.left, text), _literal(node.right, text)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            try:
                return _BINARY[type(node.op)](left, right)
            except ZeroDivisionError:
                raise SpecError(f"spec {text!r}: division by zero") from None
    raise SpecError(f"spec {text!r}: unsupported value {ast.unparse(node)!r}; "
                    "use numbers, true/false, words, quoted strings or [lists]")


def parse(value: str | Mapping[str, Any] | Spec, *, kind: str = "spec") -> Spec:
    """Parse a string or mapping into a :class:`Spec` (no registry lookup)."""
    if isinstance(value, Spec):
        return value
    if isinstance(value, Mapping):
        if "name" not in value or not isinstance(value["name"], str):
            raise SpecError(f"{kind} {dict(value)!r}: a mapping needs a 'name' string")
        params = tuple((str(k), _freeze(v)) for k, v in value.items() if k != "name")
        return Spec(value["name"].strip(), params)
    if not isinstance(value, str):
        raise SpecError(f"{kind} {value!r}: expected a string like 'name(key=value)' or a mapping")
    text = value.strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise SpecError(f"{kind} {value!r}: not of the form name or name(key=value, ...)") from None
    if isinstance(node, ast.Name):
        return Spec(node.id)
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise SpecError(f"{kind} {value!r}: not of the form name or name(key=value, ...)")
    if node.args:
        raise SpecError(f"{kind} {value!r}: parameters must be named, as in name(key=value)")
    params = tuple((kw.arg, _freeze(_literal(kw.value, text))) for kw in node.keywords
                   if kw.arg is not None)
    return Spec(node.func.id, params)


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    summary: str

    def parameters(self) -> dict[str, Any]:
        """Parameter name -> default (``inspect.Parameter.empty`` when required)."""
        signature = inspect.signature(self.factory)
        return {p.name: p.default for p in signature.parameters.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


class Registry:
    """Name -> factory for one kind of pluggable thing."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, factory: Callable[..., Any] | None = None):
        """Register ``factory`` under ``name``; usable as a decorator."""
        def add(target: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            doc = inspect.getdoc(target) or ""
            self._entries[name] = Entry(name, target, doc.split("\n\n")[0].replace("\n", " "))
            return target
        return add(factory) if factory is not None else add

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise SpecError(f"{self.kind} '{name}' is unknown; allowed: {', '.join(self.names())}")
        return self._entries[name]

    def check(self, value: str | Mapping[str, Any] | Spec,
              context_names: tuple[str, ...] = ()) -> tuple[Spec, dict[str, Any]]:
        """Parse and check names and types against the factory's signature, without building.

        ``context_names`` are parameters the caller supplies (not the user).
        """
        spec = parse(value, kind=self.kind)
        entry = self.entry(spec.name)
        allowed = entry.parameters()
        user_params = [p for p in allowed if p not in context_names]
        kwargs: dict[str, Any] = {}
        hints = _type_hints(entry.factory)
        for key, raw in spec.params:
            if key not in user_params:
                choices = ", ".join(user_params) or "none"
                raise SpecError(f"{self.kind} '{spec.name}': unknown parameter '{key}'; "
                                f"allowed: {choices}")
            kwargs[key] = _coerce(raw, hints.get(key), f"{self.kind} '{spec.name}': parameter '{key}'")
        missing = [p for p in user_params
                   if allowed[p] is inspect.Parameter.empty and p not in kwargs]
        if missing:
            raise SpecError(f"{self.kind} '{spec.name}': missing parameter '{missing[0]}'")
        return spec, kwargs

    def build(self, value: str | Mapping[str, Any] | Spec, **context: Any) -> Any:
        """Parse, check the parameters against the factory's signature, and build.

        ``context`` holds keyword arguments the caller supplies (not the user), e.g. the
        number of classes; they are passed only when the factory accepts them.
        """
        spec, kwargs = self.check(value, tuple(context))
        allowed = self.entry(spec.name).parameters()
        kwargs.update({k: v for k, v in context.items() if k in allowed})
        try:
            return self.entry(spec.name).factory(**kwargs)
        except (ValueError, TypeError) as error:
            if isinstance(error, SpecError):
                raise
            raise SpecError(f"{self.kind} '{spec.name}': {error}") from None


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # an unresolved forward reference only loses the coercion
        return {}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Apply the light coercions YAML and the string grammar need (int -> float, list -> tuple)."""
    if hint is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        for candidate in args:
            try:
                return _coerce(value, candidate, where)
            except SpecError:
                continue
        raise SpecError(f"{where} has the wrong type: {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(f"{where} must be a word or string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            value = (value,)
        args = typing.get_args(hint)
        element = args[0] if args else None
        return tuple(_coerce(v, element, where) for v in value)
    return value


def is_none(value: Any) -> bool:
    """``none`` (any case) or an empty value switches a grid dimension off."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


__all__ = ["Spec", "SpecError", "Registry", "parse", "is_none"]
