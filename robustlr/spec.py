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
import keyword
import operator
import re
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
    if isinstance(value, str):  # bare only where it reads back as the same word
        bare = (value.isidentifier() and not keyword.iskeyword(value)
                and value.lower() not in ("true", "false", "none"))
        return value if bare else repr(value)
    return repr(value)


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}

# Specs come from configs, the command line and checkpoint files, so a value is untrusted:
# every step of its evaluation is bounded, and no input can hang, exhaust memory or overflow
# the stack (``9**9**9`` would otherwise run for ever, a 50k-term sum overflows the parser).
MAX_TEXT = 2000  # characters of one spec string
MAX_DEPTH = 32  # nesting of expressions and lists
MAX_INT = 2**63 - 1  # what any consumer (torch, numpy seeds) can hold
MAX_FLOAT = 1e308  # beyond it a float is infinite
MAX_EXPONENT = 64  # |b| in a ** b


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounded(value: Any, where: str) -> Any:
    """``value`` when it is a number a consumer can use, else a one-line SpecError."""
    if isinstance(value, complex):
        raise SpecError(f"{where}: a value is not a real number")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise SpecError(f"{where}: an integer is too large (the limit is 2**63 - 1)")
    if isinstance(value, float) and not abs(value) <= MAX_FLOAT:
        raise SpecError(f"{where}: every number must be finite and at most {MAX_FLOAT:g} in size")
    return value


def _arithmetic(op: type[ast.operator], left: Any, right: Any, text: str) -> Any:
    if op is ast.Pow and abs(right) > MAX_EXPONENT:
        raise SpecError(f"spec {_quote(text)}: an exponent must be at most {MAX_EXPONENT} in size")
    try:
        return _bounded(_BINARY[op](left, right), f"spec {_quote(text)}")
    except ZeroDivisionError:
        raise SpecError(f"spec {_quote(text)}: division by zero") from None
    except OverflowError:
        raise SpecError(f"spec {_quote(text)}: a number is too large (at most {MAX_FLOAT:g})") from None


def _literal(node: ast.AST, text: str, depth: int = 0) -> Any:
    """Evaluate the small, safe, bounded subset of Python a spec value may use."""
    if depth > MAX_DEPTH:
        raise SpecError(f"spec {_quote(text)}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return _bounded(node.value, f"spec {_quote(text)}")
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    if isinstance(node, ast.Name):
        return {"true": True, "false": False, "none": None}.get(node.id.lower(), node.id)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(element, text, depth + 1) for element in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand, text, depth + 1)
        if _number(operand):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _literal(node.left, text, depth + 1)
        right = _literal(node.right, text, depth + 1)
        if _number(left) and _number(right):
            return _arithmetic(type(node.op), left, right, text)
    raise SpecError(f"spec {_quote(text)}: unsupported value {_shown(node, text)!r}; "
                    "use numbers, true/false, words, quoted strings or [lists]")


def _shown(node: ast.AST, text: str) -> str:
    # the source itself: ast.unparse recurses, and a 2,000-deep unary chain would overflow it
    shown = ast.get_source_segment(text, node) or type(node).__name__
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _syntax_tree(text: str, kind: str) -> ast.expr:
    """The parsed expression; over-long or over-deep text is refused before the parser (which
    recurses, and raises RecursionError or MemoryError on a deep enough input)."""
    if len(text) > MAX_TEXT:
        raise SpecError(f"{kind} {_quote(text)}: longer than {MAX_TEXT} characters")
    try:
        return ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise SpecError(f"{kind} {_quote(text)}: not of the form name or name(key=value, ...)") from None


_PREFIXED = re.compile(r"^(?P<name>[A-Za-z_][\w.]*:[A-Za-z_][\w.]*)\s*(?P<args>\(.*\))?$", re.S)
"""A name with a colon (an import path or a family such as ``torch:``) and its arguments."""


def parse(value: str | Mapping[str, Any] | Spec, *, kind: str = "spec") -> Spec:
    """Parse a string or mapping into a :class:`Spec` (no registry lookup)."""
    if isinstance(value, Spec):
        return value
    if isinstance(value, Mapping):
        if "name" not in value or not isinstance(value["name"], str):
            raise SpecError(f"{kind} {_short(value)}: a mapping needs a 'name' string")
        where = f"{kind} '{value['name'].strip()}'"
        params = tuple((str(k), _freeze(v, where)) for k, v in value.items() if k != "name")
        return Spec(value["name"].strip(), params)
    if not isinstance(value, str):
        raise SpecError(f"{kind} {_short(value)}: expected a string like 'name(key=value)' or a "
                        "mapping")
    text = value.strip()
    prefixed = _PREFIXED.match(text)
    if prefixed:  # "package.module:factory(...)", "torch:OneCycleLR(...)": not a Python name
        params = parse("_" + prefixed["args"], kind=kind).params if prefixed["args"] else ()
        return Spec(prefixed["name"], params)
    node = _syntax_tree(text, kind)
    if isinstance(node, ast.Name):
        return Spec(node.id)
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise SpecError(f"{kind} {_quote(value)}: not of the form name or name(key=value, ...)")
    if node.args or any(kw.arg is None for kw in node.keywords):
        raise SpecError(f"{kind} {_quote(value)}: parameters must be named, as in name(key=value)")
    names = [kw.arg for kw in node.keywords]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise SpecError(f"{kind} {_quote(value)}: parameter '{repeated}' is given twice")
    params = tuple((str(kw.arg), _freeze(_literal(kw.value, text), kind)) for kw in node.keywords)
    return Spec(node.func.id, params)


def _quote(text: str) -> str:
    """The text as a message shows it: quoted, and cut short when long."""
    return repr(text) if len(text) <= 80 else repr(text[:60]) + f"... ({len(text)} characters)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _freeze(value: Any, where: str, depth: int = 0) -> Any:
    """Lists become tuples (a Spec is hashable); a mapping spec's values (from YAML or Python)
    get the same bounds as the string grammar's."""
    if depth > MAX_DEPTH:
        raise SpecError(f"{where}: a value is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_TEXT:
            raise SpecError(f"{where}: a list is longer than {MAX_TEXT} items")
        return tuple(_freeze(v, where, depth + 1) for v in value)
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise SpecError(f"{where}: a string is longer than {MAX_TEXT} characters")
    return _bounded(value, where) if _number(value) else value


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
        items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        elements = typing.get_args(hint)
        element = elements[0] if elements else None
        return tuple(_coerce(v, element, where) for v in items)
    return value


def is_none(value: Any) -> bool:
    """``none`` (any case) or an empty value switches a grid dimension off."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


__all__ = ["Spec", "SpecError", "Registry", "parse", "is_none"]
