"""The palm settings are read from a ``.env`` file as every other settings class of the
project is: a store's configured threshold must not be silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity.settings import IdentitySettings


def test_a_dot_env_file_sets_the_identity_settings(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STOREFRONT_IDENTITY_IDENTIFY_THRESHOLD", raising=False)
    monkeypatch.delenv("STOREFRONT_IDENTITY_MAX_ENROLMENT_CAPTURES", raising=False)
    (tmp_path / ".env").write_text("STOREFRONT_IDENTITY_IDENTIFY_THRESHOLD=0.5\n"
                                   "STOREFRONT_IDENTITY_MAX_ENROLMENT_CAPTURES=7\n"
                                   "STOREFRONT_STATE_DIR=/tmp/elsewhere\n")
    monkeypatch.chdir(tmp_path)
    settings = IdentitySettings()
    assert (settings.identify_threshold, settings.max_enrolment_captures) == (0.5, 7)


def test_the_environment_wins_over_the_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("STOREFRONT_IDENTITY_IDENTIFY_THRESHOLD=0.5\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOREFRONT_IDENTITY_IDENTIFY_THRESHOLD", "0.4")
    assert IdentitySettings().identify_threshold == 0.4
