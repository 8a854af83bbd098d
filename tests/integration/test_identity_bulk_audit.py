"""Commands that decrypt every stored palm template leave one audit entry per run
(action ``bulk_decrypt``, actor ``cli``, subject ``palm_templates``, counts only):
``storefront identity retired`` and ``storefront identity rotate-transform``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms
from storefront.bootstrap import bootstrap
from storefront.cli import app
from storefront.security.audit import AuditRecord
from storefront.settings import Settings


def _bulk(folder: Path) -> tuple[list[AuditRecord], bool]:
    c = bootstrap(Settings(data_dir=folder))
    try:
        return (c.audit.entries(subject="palm_templates"), c.audit.verify().ok)
    finally:
        c.close()


def test_bulk_decryption_is_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "store"
    c = bootstrap(Settings(data_dir=folder))
    for palm, name in ((0, "Ann"), (1, "Bob")):
        sid = c.shoppers.register(display_name=name, payment_token=f"tok_{name}").id
        c.shoppers.enrol_palm(shopper_id=sid, consent_text_version="2026-11", images=[
            encode_png(SyntheticPalms(31).capture(palm, k)) for k in range(3)])
    c.close()
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(folder))
    monkeypatch.delenv("STOREFRONT_DATABASE_URL", raising=False)
    r = CliRunner().invoke(app, ["identity", "retired", "--json"])
    assert r.exit_code == 0, r.output
    (entry,), intact = _bulk(folder)
    assert intact and (entry.actor, entry.action) == ("cli", "bulk_decrypt")
    assert entry.details == {"command": "identity retired", "persons": 2, "templates": 6,
                             "usable": 6, "purge": False}
    r = CliRunner().invoke(app, ["identity", "rotate-transform"])
    assert r.exit_code == 0, r.output
    entries, intact = _bulk(folder)
    assert intact and len(entries) == 2
    rotated = entries[1]
    assert (rotated.actor, rotated.action) == ("cli", "bulk_decrypt")
    assert rotated.details["command"] == "identity rotate-transform"
    assert rotated.details["outcome"] == "done" and rotated.details["templates"] == 6
    assert "shp_" not in str([e.details for e in entries])  # counts, never whose
