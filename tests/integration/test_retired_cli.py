"""``storefront identity retired [--purge] [--yes] [--json]`` on SQLite and PostgreSQL:
lists persons whose stored templates are of a retired format version, purges exactly
those rows (one "delete" audit entry per person), and refuses malformed options."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from identity.imageio import encode_png
from identity.repository import TemplateRecord
from identity.synthetic import SyntheticPalms
from identity.template import MAGIC, Template
from storefront.bootstrap import Container, bootstrap
from storefront.cli import app
from storefront.db.models import PalmTemplate, SubjectKey
from storefront.payments import SimulatedProcessor
from storefront.settings import Settings
from storefront.templates_repo import SqlTemplateRepository

PALMS = SyntheticPalms(4242)


def _png(palm: int, capture: int) -> bytes:
    return encode_png(PALMS.capture(palm, capture))


def _v2(template: Template) -> bytes:
    """The retired v2 layout (template.py): v3 header without the ordinal length."""
    t = template
    return struct.pack(">4sBBBHHII", MAGIC, 2, 3, t.variants, *t.grid, len(t.code),
                       len(t.mask)) + t.code + t.mask


def _v3() -> bytes:
    rng = np.random.default_rng(5)
    return Template.from_bits(rng.random((3, 16, 16)) < 0.5, np.ones((16, 16), bool),
                              rng.random((3, 16, 16)) < 0.5).to_bytes()


@dataclass
class Store:
    """A store with ``mixed`` (usable palm + one v2 template) and ``old`` (v1 + v2 only)."""

    c: Container
    mixed: str
    old: str
    usable_ids: list[str]


def _add_unreadable(store: Store) -> str:
    """A person with one template whose data key is shredded (unreadable). The service
    itself cannot load such a row (only retired ones are skipped), so tests that identify
    do not add it."""
    gone = _register(store.c, "gone")
    cipher = store.c.identity._cipher  # type: ignore[attr-defined]
    SqlTemplateRepository(store.c.db).add([
        TemplateRecord("gone-1", gone, cipher.encrypt(gone, _v3()), datetime.now(UTC))])
    cipher.shred(gone)
    return gone


def _register(c: Container, name: str) -> str:
    return c.shoppers.register(display_name=name, payment_token=f"tok_{name}").id


@pytest.fixture
def store(tmp_path: Path, database: str | None,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    c = bootstrap(Settings(data_dir=tmp_path / "store", database_url=database),
                  processor=SimulatedProcessor(seed=1, decline_rate=0.0))
    mixed, old = (_register(c, n) for n in ("mixed", "old"))
    enrolment = c.shoppers.enrol_palm(shopper_id=mixed, images=[_png(0, k) for k in range(3)],
                                      consent_text_version="2026-11")
    cipher = c.identity._cipher  # type: ignore[attr-defined]  # the service's StoreKeyring
    old_palm = Template.from_bytes(cipher.decrypt(mixed, next(
        r for r in SqlTemplateRepository(c.db).all()).ciphertext))
    now = datetime.now(UTC)
    SqlTemplateRepository(c.db).add([
        TemplateRecord("retired-mixed", mixed, cipher.encrypt(mixed, _v2(old_palm)), now),
        TemplateRecord("retired-old-1", old, cipher.encrypt(old, MAGIC + b"\x01" + bytes(40)),
                       now),
        TemplateRecord("retired-old-2", old, cipher.encrypt(old, _v2(old_palm)), now)])
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    if database is None:
        monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("STOREFRONT_DATABASE_URL", database)
    yield Store(c, mixed, old, sorted(enrolment.template_ids))
    c.engine.dispose()  # not close(): its snapshot save is not what these tests look at


def _run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["identity", "retired", *args], input=stdin)
    return result.exit_code, result.output


def _rows(c: Container) -> dict[str, list[str]]:
    with c.db() as db:
        rows = db.execute(sa.select(PalmTemplate.shopper_id, PalmTemplate.template_id)
                          .order_by(PalmTemplate.template_id)).all()
    out: dict[str, list[str]] = {}
    for shopper, template in rows:
        out.setdefault(shopper, []).append(template)
    return out


def test_lists_affected_persons_as_a_table_and_as_json(store: Store) -> None:
    gone = _add_unreadable(store)
    before = _rows(store.c)
    code, out = _run()
    assert code == 0, out
    assert store.mixed in out and store.old in out and gone in out
    assert "2 of 3 person(s) have 3 retired template(s) (v1: 1, v2: 2); 1 unreadable" in out
    code, out = _run("--json")
    assert code == 0, out
    report = json.loads(out)
    persons = {p["subject_id"]: p for p in report["persons"]}
    assert persons[store.mixed] == {"subject_id": store.mixed, "retired": {"2": 1},
                                    "usable": len(store.usable_ids), "unreadable": 0}
    assert persons[store.old]["retired"] == {"1": 1, "2": 1} and persons[store.old]["usable"] == 0
    assert persons[gone]["retired"] == {} and persons[gone]["unreadable"] == 1
    assert report["summary"] == {
        "persons_scanned": 3, "templates_scanned": len(store.usable_ids) + 4,
        "usable_templates": len(store.usable_ids), "affected_persons": 2,
        "retired_templates": {"1": 1, "2": 2}, "unreadable_templates": 1}
    assert report["purged"] is None
    assert _rows(store.c) == before  # listing deletes nothing


def test_purge_yes_deletes_exactly_the_retired_rows_and_audits_each_person(
        store: Store) -> None:
    c = store.c
    assert c.identity.identify(image=_png(0, 6)).subject_id == store.mixed
    code, out = _run("--purge", "--yes", "--json")
    assert code == 0, out
    purged = json.loads(out)["purged"]
    assert purged["templates_deleted"] == 3 and purged["skipped_unreadable"] == []
    assert {p["subject_id"]: (p["templates"], p["kept"], p["removed_with_data_key"])
            for p in purged["persons"]} == {store.mixed: (1, len(store.usable_ids), False),
                                            store.old: (2, 0, True)}
    assert _rows(c) == {store.mixed: store.usable_ids}
    with c.db() as db:
        keys = set(db.scalars(sa.select(SubjectKey.subject_id)))
    assert store.mixed in keys and store.old not in keys
    entries = [e for e in c.audit.entries(limit=1000) if e.action == "delete"]
    assert sorted((e.subject, e.actor, e.details["templates"]) for e in entries) == sorted([
        (f"shopper:{store.mixed}", "cli", 1), (f"shopper:{store.old}", "cli", 2)])
    assert all(e.details["what"] == "retired palm templates" for e in entries)
    assert c.identity.identify(image=_png(0, 7)).subject_id == store.mixed  # replayed
    code, out = _run("--purge", "--yes")
    assert code == 0, out
    assert "purged 0 retired template(s) of 0 person(s)" in out


def test_purge_asks_for_confirmation_and_keeps_unreadable_templates(store: Store) -> None:
    gone = _add_unreadable(store)
    before = _rows(store.c)
    code, out = _run("--purge", stdin="n\n")
    assert code == 1 and "Delete 3 retired template(s) of 2 person(s)?" in out
    assert _rows(store.c) == before
    code, out = _run("--purge", stdin="y\n")
    assert code == 0, out
    assert "purged 3 retired template(s) of 2 person(s); 1 person(s) had no template left" in out
    after = _rows(store.c)
    assert store.old not in after and after[gone] == ["gone-1"]
    assert after[store.mixed] == store.usable_ids


@pytest.mark.parametrize(("args", "reason"), [
    (["--yes"], "Invalid value for '--yes': it applies only with --purge"),
    (["--purge", "--json"], "--purge --json needs --yes"),
    (["--purge", "--force"], "No such option"),
    (["--json=yes"], "does not take a value"),
])
def test_malformed_options_are_refused_with_a_reason(
        args: list[str], reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "store"))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    code, out = _run(*args)
    assert code == 2 and reason in out, out
    assert not (tmp_path / "store").exists()  # refused before opening anything


def test_a_missing_database_is_an_error_and_nothing_is_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mistyped state folder must not be reported as an empty store (exit 0) after a
    fresh database and a fresh KEK were made up there."""
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path / "typo"))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    monkeypatch.delenv("STOREFRONT_KEY_FILE", raising=False)
    for args in ([], ["--json"], ["--purge", "--yes"]):
        code, out = _run(*args)
        assert code == 2 and "no database at" in " ".join(out.split()), out
    assert not (tmp_path / "typo").exists()


def test_a_missing_key_file_is_an_error_and_no_key_is_made_up(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the database in place but the KEK file elsewhere, a new KEK must not be
    created (every template would then read as unreadable, and the service would later
    start with a key that opens nothing)."""
    missing = tmp_path / "elsewhere" / "kek.key"
    monkeypatch.setenv("STOREFRONT_KEY_FILE", str(missing))
    code, out = _run("--json")
    assert code == 2 and "does not exist" in " ".join(out.split()), out
    assert not missing.exists() and not missing.parent.exists()


def test_a_database_without_the_storefront_tables_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "store"
    state.mkdir()
    engine = sa.create_engine(f"sqlite:///{state / 'storefront.db'}")
    with engine.begin() as db:
        db.execute(sa.text("CREATE TABLE unrelated (x INTEGER)"))
    engine.dispose()
    (state / "keys").mkdir()
    key = state / "keys" / "kek.key"
    key.write_bytes(bytes(range(1, 33)))
    key.chmod(0o600)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(state))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    monkeypatch.delenv("STOREFRONT_KEY_FILE", raising=False)
    code, out = _run()
    assert code == 2 and "no palm templates table" in " ".join(out.split()), out
    engine = sa.create_engine(f"sqlite:///{state / 'storefront.db'}")
    try:
        assert sa.inspect(engine).get_table_names() == ["unrelated"]  # not migrated
    finally:
        engine.dispose()
