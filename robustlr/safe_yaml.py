"""YAML from files robustlr did not write: bounded in size, depth and alias expansion, with
repeated keys refused, so no config can hang or exhaust memory before it is validated.

PyYAML's safe loader builds no objects but plain data, yet an alias bomb (a few lines whose
aliases expand to billions of nodes), a self-referencing anchor or a deep nesting still blows up
whatever walks the result; and a repeated key silently keeps the last value.

>>> load_text("a: 1\\nb: [x, y]\\n", source="inline")
{'a': 1, 'b': ['x', 'y']}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from robustlr.errors import InputError

MAX_BYTES = 1 << 20  # a config is a page of text; a megabyte is already generous
MAX_NODES = 100_000  # nodes after expanding every alias
MAX_DEPTH = 64

_MERGE = "tag:yaml.org,2002:merge"


class YamlInputError(InputError):
    """A YAML file that cannot be read safely; one line naming the file and the problem."""


class _BoundedLoader(yaml.SafeLoader):
    source = "YAML"
    _depth = 0

    def compose_node(self, parent, index):
        # stop a deep nesting while it is read: PyYAML's scanner slows quadratically with it
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlInputError(f"{self.source}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _check_expansion(node, self.source)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue  # "<<: *base" then a key that overrides it is the point of merging
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise YamlInputError(f"{self.source}: key {key!r} is repeated at line "
                                             f"{key_node.start_mark.line + 1}; give it once")
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node | None, source: str) -> None:
    """Refuse a node graph whose alias expansion exceeds MAX_NODES or MAX_DEPTH, or that
    refers to itself. Each distinct node is visited once (sizes are memoised), so checking a
    bomb costs as little as reading it."""
    if root is None:
        return
    sizes: dict[int, tuple[int, int]] = {}  # id -> (expanded nodes, depth)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not children_done:
            if id(node) in open_nodes:
                raise YamlInputError(f"{source}: an alias refers to a node that contains it")
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(id(node))
        if any(id(child) not in sizes for child in children):
            raise YamlInputError(f"{source}: an alias refers to a node that contains it")
        total = 1 + sum(sizes[id(child)][0] for child in children)
        depth = 1 + max((sizes[id(child)][1] for child in children), default=0)
        if total > MAX_NODES or depth > MAX_DEPTH:
            raise YamlInputError(f"{source}: expands to more than {MAX_NODES} values or "
                                 f"{MAX_DEPTH} levels of nesting (an alias bomb?)")
        sizes[id(node)] = (total, depth)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_text(text: str, *, source: str) -> Any:
    """Parse ``text`` (named ``source`` in messages) with every bound applied."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader already refuses control characters
        loader.source = source
        return loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise YamlInputError(f"{source} is not valid YAML{where}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_file(path: Path) -> Any:
    """Read and parse a YAML file: at most MAX_BYTES, UTF-8 text, bounded as above."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise YamlInputError(f"{path}: cannot read it: {error.strerror or error}") from None
    if len(data) > MAX_BYTES:
        raise YamlInputError(f"{path} is larger than {MAX_BYTES >> 20} MiB; is it a config?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlInputError(f"{path} is not UTF-8 text (byte {error.start} is not valid); "
                             "is it a binary file?") from None
    return load_text(text, source=str(path))
