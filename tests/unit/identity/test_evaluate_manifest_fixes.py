"""``identity.evaluate_run``: per-identity session pairing in natural order, duplicate and
contradicting manifest rows, unreadable files apart from FTA, FTE of identities that had
enrolment captures, rank-1 only with competitors, lenient manifest headers."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from identity.evaluate_run import (
    Capture,
    ManifestError,
    evaluate_folder,
    load_manifest,
    natural_key,
    plan,
)
from identity.imageio import encode_png
from identity.synthetic import SyntheticPalms

HEADER = ["path", "identity", "session", "capture", "source"]
GEN = SyntheticPalms(seed=11)


def _folder(root: Path, rows: list[tuple[str, str, str]], header: list[str] = HEADER,
            missing: tuple[int, ...] = (), junk: tuple[int, ...] = ()) -> Path:
    """A manifest folder with one synthetic capture per (identity, session, capture) row;
    identity ``pN`` is palm N. Rows at the ``missing`` indexes get no file, at ``junk``
    a file that is not an image."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for n, (identity, session, capture) in enumerate(rows):
        rel = f"{identity}/{session}_{capture}.png"
        (root / identity).mkdir(exist_ok=True)
        if n in junk:
            (root / rel).write_bytes(b"not an image")
        elif n not in missing:
            (root / rel).write_bytes(encode_png(GEN.capture(int(identity[1:]), n)))
        lines.append([rel, identity, session, capture, "synthetic"])
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(lines)
    return root


def _append(folder: Path, *rows: list[str]) -> None:
    with (folder / "manifest.csv").open("a", newline="") as f:
        csv.writer(f).writerows(rows)


def test_natural_key_orders_numbers_by_value_and_iso_dates_by_date() -> None:
    assert sorted(["10", "2", "1"], key=natural_key) == ["1", "2", "10"]
    assert sorted(["s10", "s2", "S1"], key=natural_key) == ["S1", "s2", "s10"]
    assert sorted(["2024-10-01", "2024-9-30", "2023-12-31"], key=natural_key) == [
        "2023-12-31", "2024-9-30", "2024-10-01"]


def test_sessions_1_2_10_pair_1_with_2_and_report_10_unused(tmp_path: Path) -> None:
    rows = [(p, s, "0") for p in ("p0", "p1") for s in ("1", "2", "10")]
    report = evaluate_folder(_folder(tmp_path / "set", rows)).report
    assert report["protocol"] == "session 1 x session 2"  # was 1 x 10, 2 dropped
    assert report["captures_unused"] == 2 and "third and later" in report[
        "captures_unused_reason"]
    assert report["images"] == 4
    assert (report["genuine_comparisons"], report["impostor_comparisons"]) == (2, 2)


def test_sessions_2_and_10_enrol_from_2() -> None:
    caps = [Capture(Path(f"{p}_{s}.png"), p, s, "0") for p in ("a", "b") for s in ("10", "2")]
    split = plan(caps)
    assert split.paired and split.protocol == "session 2 x session 10"
    assert split.references == {Path("a_2.png"), Path("b_2.png")}
    assert split.unused == []


def test_per_identity_session_labels_pair_each_identitys_own_sessions(tmp_path: Path) -> None:
    """Each identity has its own two dates (one shared by chance): every identity enrols
    from its earlier date and is probed with its later one (was 1 genuine, FTE 2/3)."""
    rows = [("p0", "2024-01-03", "0"), ("p0", "2024-02-10", "0"),
            ("p1", "2024-01-05", "0"), ("p1", "2024-03-01", "0"),
            ("p2", "2023-12-01", "0"), ("p2", "2024-01-03", "0")]
    report = evaluate_folder(_folder(tmp_path / "set", rows)).report
    assert report["genuine_comparisons"] == 3 and report["impostor_comparisons"] == 6
    assert report["fte"] == 0.0 and report["fta"] == 0.0
    assert report["captures_unused"] == 0
    assert report["protocol"] == "each identity's first session x its second session"
    assert report["rank1"] == 1.0


def test_identity_with_one_session_supplies_references_and_is_no_fte(tmp_path: Path) -> None:
    rows = [("p0", "1", "0"), ("p0", "2", "0"), ("p1", "1", "0"), ("p1", "2", "0"),
            ("p2", "2", "0")]
    report = evaluate_folder(_folder(tmp_path / "set", rows)).report
    assert report["fte"] == 0.0  # p2 was counted as a failure to enrol (1/3)
    assert report["genuine_comparisons"] == 2
    assert report["impostor_comparisons"] == 2 * 2  # each probe vs the 2 other references
    assert report["identities"] == 3 and report["images"] == 5


def test_fte_counts_identities_whose_readable_enrolment_captures_all_failed(
        tmp_path: Path) -> None:
    """p1's enrolment capture does not decode: an FTE of the two identities that had a
    readable enrolment capture; p2's is missing (a data error, neither failure nor
    attempt)."""
    rows = [(p, s, "0") for p in ("p0", "p1", "p2") for s in ("1", "2")]
    report = evaluate_folder(_folder(tmp_path / "set", rows, junk=(2,), missing=(4,))).report
    assert report["fte"] == pytest.approx(1 / 2)
    assert report["fta"] == pytest.approx(1 / 5)
    assert report["unreadable"] == 1 and report["images"] == 5
    assert report["unreadable_first"][0]["path"].endswith("p2/1_0.png")
    assert [f["path"] for f in report["failures"]] == [str(tmp_path / "set" / "p1/1_0.png")]


def test_rank1_needs_two_enrolled_identities(tmp_path: Path) -> None:
    rows = [(p, s, "0") for p in ("p0", "p1") for s in ("1", "2")]
    report = evaluate_folder(_folder(tmp_path / "set", rows, junk=(2,))).report
    assert report["rank1"] is None  # only p0 enrolled: was 1.0
    one = evaluate_folder(_folder(tmp_path / "one", [("p0", "1", "0"), ("p0", "2", "0")]))
    assert one.report["rank1"] is None and one.report["genuine_comparisons"] == 1


def test_a_file_listed_twice_is_used_once_and_reported(tmp_path: Path) -> None:
    rows = [(p, "1", c) for p in ("p0", "p1") for c in ("0", "1")]
    folder = _folder(tmp_path / "set", rows)
    _append(folder, ["p0/1_0.png", "p0", "1", "0", "again"],
            ["./p0/1_1.png", "p0", "1", "1b", "the same file, another spelling"])
    result = evaluate_folder(folder)
    report = result.report
    assert report["duplicate_rows"] == 2 and report["images"] == 4
    assert [(d["line"], d["first_line"]) for d in report["duplicate_first"]] == [(6, 2), (7, 3)]
    assert report["genuine_comparisons"] == 2  # was 6, with two self-comparisons
    assert result.genuine.max() < 1.0


def test_the_same_file_under_two_identities_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", [("p0", "1", "0"), ("p1", "1", "0")])
    _append(folder, ["p0/1_0.png", "p1", "1", "9", "mislabelled"])
    with pytest.raises(ManifestError, match="lines 2 and 4 .*two identities"):
        load_manifest(folder)


def test_headers_in_any_case_with_spaces_and_padded_values(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", [("p0", "1", "0"), ("p1", "1", "0")],
                     header=[" Path", " IDENTITY ", "Session", "capture ", "source"])
    _append(folder, [" p0/1_0.png ", " p0", "1 ", " 7", "x"])
    manifest = load_manifest(folder)
    assert [c.identity for c in manifest.captures] == ["p0", "p1"]
    assert len(manifest.duplicates) == 1  # the padded row names the same file


def test_a_missing_column_names_the_columns_found(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", [("p0", "1", "0")],
                     header=["path", "ident", "session", "capture", "source"])
    with pytest.raises(ManifestError, match=r"lacks the column\(s\) identity "
                                            r"\(columns found: 'path', 'ident'"):
        load_manifest(folder)


def test_no_readable_file_is_an_error_not_fta(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "set", [("p0", "1", "0"), ("p1", "1", "0")], missing=(0, 1))
    with pytest.raises(ManifestError, match="none of the 2 image"):
        evaluate_folder(folder)
