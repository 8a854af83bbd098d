"""Break-test fixes of ``storefront identity bench`` and ``rotate-transform``: bench prints
JSON that parses when piped (never wrapped by rich), refuses a folder whose real palms
have no usable session-1 image with exit 2 and a reason (no IndexError), and
rotate-transform never creates a store or key files (exit 2, nothing written)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from identity.imageio import encode_png
from identity.revocable import RevocableTransform
from identity.synthetic import SyntheticPalms
from storefront.cli import app

runner = CliRunner()
PALMS = SyntheticPalms(seed=11)


def _folder(folder: Path, *, dark_session_1: bool = False) -> Path:
    """3 synthetic palms x 2 sessions x 2 captures (p0, p1: the probed palms of
    ``--real-palms 2``; p2: filler source). ``dark_session_1``: the session-1 images of
    p0 and p1 are black (FTA too dark), so no real palm has a gallery template."""
    folder.mkdir(parents=True)
    rows = []
    for palm in range(3):
        (folder / f"p{palm}").mkdir()
        for session in (1, 2):
            for c in range(2):
                rel = f"p{palm}/s{session}_{c}.png"
                image = PALMS.capture(palm, (session - 1) * 2 + c)
                if dark_session_1 and session == 1 and palm < 2:
                    image = np.zeros_like(image)
                (folder / rel).write_bytes(encode_png(image))
                rows.append([rel, f"p{palm}", str(session), str(c), "synthetic"])
    with (folder / "manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "identity", "session", "capture", "source"])
        writer.writerows(rows)
    return folder


def _narrow_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's rich console as a piped 80-column terminal (the tests' COLUMNS is 200)."""
    monkeypatch.setattr("storefront.cli_identity.console", Console(width=80))


def test_bench_prints_json_that_parses_when_piped(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _narrow_console(monkeypatch)
    palms = _folder(tmp_path / "palms")
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["identity", "bench", "--gallery", "1000", "--palms",
                                 str(palms), "--real-palms", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the whole of stdout is the JSON document
    assert report["gallery"] == 1000 and report["real_palms"] == 2
    long_values = [v for v in report.values() if isinstance(v, str) and len(v) > 80]
    assert long_values  # lines longer than the console: rich would have wrapped them
    assert json.loads(out.read_text(encoding="utf-8")) == report


def test_bench_without_usable_session_1_images_exits_2(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _narrow_console(monkeypatch)
    palms = _folder(tmp_path / "palms", dark_session_1=True)
    result = runner.invoke(app, ["identity", "bench", "--gallery", "1000", "--palms",
                                 str(palms), "--real-palms", "2"])
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, IndexError)
    output = " ".join(result.output.split())
    assert "error:" in output and "session-1" in output and "too dark" in output


def test_load_data_refuses_an_empty_gallery(tmp_path: Path) -> None:
    from identity.scale_bench import load_data

    palms = _folder(tmp_path / "palms", dark_session_1=True)
    with pytest.raises(ValueError, match="has a usable session-1 image"):
        load_data(palms, real_palms=2)


# --- rotate-transform ---------------------------------------------------------------------


def _clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "KEY_FILE", "REVOCABLE_KEY_FILE", "ENVIRONMENT",
                 "DATA_DIR"):
        monkeypatch.delenv(f"STOREFRONT_{name}", raising=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_rotate_transform_refuses_an_empty_folder(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_env(monkeypatch)
    state = tmp_path / "x"
    state.mkdir()
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(state))
    result = runner.invoke(app, ["identity", "rotate-transform"])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "no database" in output and "nothing was created" in output
    assert list(state.rglob("*")) == []  # no database, no key files


def _store(folder: Path) -> None:
    """A store with two enrolled shoppers (database, KEK, revocable key, snapshot)."""
    from storefront.bootstrap import bootstrap
    from storefront.settings import Settings

    running = bootstrap(Settings(data_dir=folder))
    for i in range(2):
        shopper = running.shoppers.register(display_name=f"S{i}", payment_token=f"tok_{i}")
        running.shoppers.enrol_palm(shopper_id=shopper.id,
                                    images=[encode_png(PALMS.capture(i, c)) for c in range(2)],
                                    consent_text_version="2026-11")
    running.close()


def test_rotate_transform_without_the_kek_writes_nothing(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    _clear_env(monkeypatch)
    _store(tmp_path)
    (tmp_path / "keys" / "kek.key").unlink()
    before = _files(tmp_path)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path))
    result = runner.invoke(app, ["identity", "rotate-transform"])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "kek.key does not exist" in output and "nothing was created" in output
    assert not (tmp_path / "keys" / "kek.key").exists()
    assert not (tmp_path / "keys" / "revocable.key.next").exists()
    assert _files(tmp_path) == before


def test_rotate_transform_without_the_revocable_key_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear_env(monkeypatch)
    _store(tmp_path)
    (tmp_path / "keys" / "revocable.key").unlink()
    before = _files(tmp_path)
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path))
    result = runner.invoke(app, ["identity", "rotate-transform"])
    assert result.exit_code == 2, result.output
    assert "revocable.key does not exist" in " ".join(result.output.split())
    assert _files(tmp_path) == before


def test_rotate_transform_with_a_wrong_kek_leaves_no_next_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KEK that decrypts nothing fails the rebuild: the prepared key is removed and the
    revocable key is unchanged."""
    _clear_env(monkeypatch)
    _store(tmp_path)
    kek = tmp_path / "keys" / "kek.key"
    kek.write_bytes(os.urandom(32))
    revocable = tmp_path / "keys" / "revocable.key"
    old_id = RevocableTransform(revocable.read_bytes()).key_id
    monkeypatch.setenv("STOREFRONT_STATE_DIR", str(tmp_path))
    result = runner.invoke(app, ["identity", "rotate-transform"])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "keys" / "revocable.key.next").exists()
    assert RevocableTransform(revocable.read_bytes()).key_id == old_id
