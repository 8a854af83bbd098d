"""Palm captures for the demo: a manifest folder of real images, or synthetic palms.

Manifest format (as in the shared data sets): ``manifest.csv`` with columns
``path,identity,session,capture,source``; ``path`` relative to the folder.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from identity.evaluate_run import ManifestError, read_manifest
from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.errors import InvalidInput

ImageSource = Callable[[], bytes]


@dataclass(frozen=True)
class PalmPerson:
    """One palm: captures to enrol and one capture presented at the entry gate."""

    identity: str
    enrol: tuple[ImageSource, ...]
    probe: ImageSource


def _reader(path: Path) -> ImageSource:
    return lambda: path.read_bytes()


def _read_manifest(folder: Path) -> dict[str, list[tuple[str, str, Path]]]:
    """Captures by identity, read by :func:`identity.evaluate_run.read_manifest` (the
    manifest rules of ``storefront identity evaluate``); raises InvalidInput for a
    manifest that cannot be read (not UTF-8, not CSV), lacks a column, has a row with an
    empty field, lists a path outside the folder, or lists an image that is not a file."""
    if not (folder / "manifest.csv").is_file():
        raise InvalidInput(f"{folder} has no manifest.csv")
    try:
        captures = read_manifest(folder)
    except ManifestError as exc:
        raise InvalidInput(exc.reason) from None
    people: dict[str, list[tuple[str, str, Path]]] = defaultdict(list)
    for c in captures:
        if not c.path.is_file():
            raise InvalidInput(f"{folder / 'manifest.csv'}: "
                               f"{str(c.path.relative_to(folder))!r} is not a file in {folder}")
        people[c.identity].append((c.session, c.capture, c.path))
    return people


def _split(identity: str, captures: list[tuple[str, str, Path]]) -> PalmPerson | None:
    """First session enrols; a later session's first capture probes (else the last capture)."""
    captures = sorted(captures)
    first = captures[0][0]
    enrol = [c for c in captures if c[0] == first]
    later = [c for c in captures if c[0] != first]
    if later:
        probe = later[0]
    elif len(enrol) >= 2:
        probe = enrol.pop()
    else:
        return None
    return PalmPerson(identity, tuple(_reader(c[2]) for c in enrol), _reader(probe[2]))


def manifest_people(folder: Path, count: int, seed: int) -> list[PalmPerson]:
    """Up to ``count`` people from a manifest folder, chosen with ``seed``.

    Identities with a single capture cannot both enrol and probe and are left out.
    Raises InvalidInput for a missing or malformed manifest.
    """
    people = [p for identity, caps in sorted(_read_manifest(folder).items())
              if (p := _split(identity, caps)) is not None]
    if not people:
        raise InvalidInput(f"{folder}: no identity has two or more captures")
    rng = random.Random(seed)
    return sorted(rng.sample(people, min(count, len(people))), key=lambda p: p.identity)


def synthetic_people(count: int, seed: int, enrol_captures: int = 5) -> list[PalmPerson]:
    """``count`` synthetic palms: ``enrol_captures`` captures enrol, one more probes."""
    palms = SyntheticPalms(seed)

    def source(palm: int, capture: int) -> ImageSource:
        return lambda: encode_png(palms.capture(palm, capture))

    return [PalmPerson(f"synthetic{palm:04d}",
                       tuple(source(palm, c) for c in range(enrol_captures)),
                       source(palm, enrol_captures))
            for palm in range(count)]
