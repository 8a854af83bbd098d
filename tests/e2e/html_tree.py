"""A small HTML reader for the page tests: the page as a tree of Nodes (standard library
``html.parser``; void elements such as ``<input>`` have no end tag)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


def _attr(name: str) -> str:
    """A keyword name as an attribute name: ``class_`` -> ``class``, ``aria_x`` -> ``aria-x``."""
    return name.rstrip("_").replace("_", "-")


@dataclass
class Node:
    """An element of a parsed page."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def iter(self) -> Iterator[Node]:
        """This element and every element below it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def text(self) -> str:
        """The element's text, whitespace collapsed."""
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def all(self, tag: str, **attrs: str) -> list[Node]:
        """This element and those below it with ``tag`` and the attribute values."""
        return [n for n in self.iter() if n.tag == tag
                and all(n.attrs.get(_attr(k)) == v for k, v in attrs.items())]

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Elements below this one with ``tag`` (any when None) and the attribute values."""
        return [n for n in self.iter() if n is not self and (tag is None or n.tag == tag)
                and all(n.attrs.get(_attr(k)) == v for k, v in attrs.items())]

    def find(self, tag: str | None = None, **attrs: str) -> Node:
        """The first matching element below this one (the test fails when there is none)."""
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag}> with {attrs}"
        return found[0]

    def by_id(self, ident: str) -> Node:
        """The one element with id ``ident``."""
        found = [n for n in self.iter() if n.attrs.get("id") == ident]
        assert len(found) == 1, f"id {ident!r}: {len(found)} elements"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    """The page as a tree of Nodes (root tag ``#document``)."""
    builder = _Builder()
    builder.feed(html)
    return builder.root
