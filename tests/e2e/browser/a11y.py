"""Accessibility checks run inside the page (``page.evaluate``).

* :func:`unnamed_controls`: visible inputs, selects, textareas, buttons and links
  without an accessible name (``<label for>``, a wrapping label, ``aria-label`` or
  ``aria-labelledby``; buttons and links: their text);
* :func:`inline_styles`: elements with a ``style`` attribute (the page CSP refuses them);
* :func:`horizontal_overflow`: how far the document is wider than the window (at 200%
  zoom nothing may need horizontal scrolling);
* :func:`focus_order`: the elements Tab reaches, in order, as (tag, accessible name);
* :func:`problems`: all of the above that must be empty, as readable sentences.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page

# The accessible name as a person using a screen reader would hear it (the subset of
# the accessible-name computation the pages rely on).
_NAME_JS = """
function accName(el) {
  const text = (node) => (node ? node.textContent : "").replace(/\\s+/g, " ").trim();
  const ids = el.getAttribute("aria-labelledby");
  if (ids) {
    const named = ids.split(/\\s+/).map((id) => text(document.getElementById(id)))
      .filter(Boolean).join(" ");
    if (named) return named;
  }
  const aria = (el.getAttribute("aria-label") || "").trim();
  if (aria) return aria;
  if (el.labels && el.labels.length) {
    const labelled = Array.from(el.labels).map(text).filter(Boolean).join(" ");
    if (labelled) return labelled;
  }
  const tag = el.tagName;
  if (tag === "BUTTON" || tag === "A" || tag === "SUMMARY") return text(el);
  if (tag === "INPUT" && ["submit", "button", "reset"].includes(el.type)) {
    return (el.value || "").trim();
  }
  return "";
}
function visible(el) {
  if (el.type === "hidden") return false;
  const style = getComputedStyle(el);
  return style.visibility !== "hidden" && style.display !== "none"
    && el.getClientRects().length > 0;
}
function describe(el) {
  const id = el.id ? "#" + el.id : "";
  const name = el.getAttribute("name") ? `[name=${el.getAttribute("name")}]` : "";
  return el.tagName.toLowerCase() + id + name;
}
"""

_UNNAMED_JS = "() => {" + _NAME_JS + """
  return Array.from(document.querySelectorAll("input, select, textarea, button, a[href]"))
    .filter((el) => visible(el) && !accName(el)).map(describe);
}"""

_INLINE_STYLE_JS = "() => {" + _NAME_JS + """
  return Array.from(document.querySelectorAll("[style]"))
    .filter((el) => el.getAttribute("style").trim() !== "")
    .map((el) => `${describe(el)} style="${el.getAttribute("style")}"`);
}"""

_OVERFLOW_JS = """() => ({scrollWidth: document.documentElement.scrollWidth,
                         innerWidth: window.innerWidth})"""

_ACTIVE_JS = "() => {" + _NAME_JS + """
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const all = Array.from(document.getElementsByTagName("*"));
  return {tag: el.tagName.toLowerCase(), name: accName(el), index: all.indexOf(el),
          type: el.type || ""};
}"""


_TO_START_JS = """() => {
  const body = document.body;
  const had = body.getAttribute("tabindex");
  body.tabIndex = -1;
  body.focus();
  if (had === null) body.removeAttribute("tabindex"); else body.setAttribute("tabindex", had);
  window.scrollTo(0, 0);
}"""


def unnamed_controls(page: Page) -> list[str]:
    """Visible form controls and links with no accessible name (``tag#id[name=..]``)."""
    found: list[str] = page.evaluate(_UNNAMED_JS)
    return found


def inline_styles(page: Page) -> list[str]:
    """Elements carrying a ``style`` attribute (``tag#id[name=..] style="..."``).

    Empty attributes are not counted: Playwright's screenshots leave ``style=""``
    behind on the elements they touched, and an empty attribute styles nothing.
    """
    found: list[str] = page.evaluate(_INLINE_STYLE_JS)
    return found


def horizontal_overflow(page: Page) -> int:
    """CSS pixels by which the document is wider than the window (0 when it fits;
    one pixel of rounding is forgiven)."""
    sizes: dict[str, int] = page.evaluate(_OVERFLOW_JS)
    return max(0, sizes["scrollWidth"] - sizes["innerWidth"] - 1)


def active_element(page: Page) -> dict[str, Any] | None:
    """The focused element as ``{tag, name, index, type}``; None when nothing is."""
    found: dict[str, Any] | None = page.evaluate(_ACTIVE_JS)
    return found


def focus_order(page: Page, limit: int = 80) -> list[tuple[str, str]]:
    """Press Tab from the top of the page until focus leaves the page or comes back to
    the first element; returns each focused element as (tag, accessible name).

    Focus is first moved to the document's start: the body is focused through a
    ``tabindex`` that is removed again at once (a blur alone would leave the browser's
    focus navigation starting point where the focus was).
    """
    page.evaluate(_TO_START_JS)
    order: list[tuple[str, str]] = []
    seen: set[int] = set()
    for _ in range(limit):
        page.keyboard.press("Tab")
        active = active_element(page)
        if active is None or active["index"] in seen:
            break
        seen.add(active["index"])
        order.append((active["tag"], active["name"]))
    return order


def tab_to(page: Page, name: str, limit: int = 60) -> dict[str, Any]:
    """Press Tab until the focused element's accessible name is ``name`` (exactly, or
    starting with it); returns that element. Raises AssertionError when Tab never gets
    there within ``limit`` presses."""
    visited: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        active = active_element(page)
        if active is not None:
            if active["name"] == name or active["name"].startswith(name):
                return active
            visited.append(f"{active['tag']}:{active['name']}")
    raise AssertionError(f"Tab never reached {name!r}; reached {visited}")


def problems(page: Page) -> list[str]:
    """Everything :func:`unnamed_controls`, :func:`inline_styles` and
    :func:`horizontal_overflow` find, as sentences (empty when the page passes)."""
    found = [f"no accessible name: {c}" for c in unnamed_controls(page)]
    found += [f"inline style attribute: {e}" for e in inline_styles(page)]
    overflow = horizontal_overflow(page)
    if overflow:
        found.append(f"horizontal scrolling needed: {overflow} px wider than the window")
    return found
