"""The error family on the command line: a user error prints its message (exit 2), anything else is an
internal error with its traceback on standard error (exit 3)."""

from __future__ import annotations

import argparse

import pytest

from napari_wsirobust import cli
from napari_wsirobust.cohort import CohortError
from napari_wsirobust.errors import InputError, WsiRobustError, is_user_error, user_message
from napari_wsirobust.io import SlideReadError
from napari_wsirobust.stain import HarmonisationError


@pytest.mark.parametrize(
    "exc",
    [
        SlideReadError("a.svs", "truncated"),
        CohortError("no label column"),
        HarmonisationError("site D is not a training site"),
        InputError("tile_size must be at least 8 px"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_user_error_prints_its_message(
    exc: WsiRobustError, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "build_parser", lambda: _parser_raising(exc))
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {exc}\n"  # the message alone: no traceback, no class name
    assert is_user_error(exc) and user_message(exc) == str(exc)


def test_another_error_is_internal_with_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "build_parser", lambda: _parser_raising(KeyError("mpp_x")))
    assert cli.main([]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: Internal error (KeyError: 'mpp_x'); the details are in the log.\n")
    assert "Traceback (most recent call last)" in err and "KeyError: 'mpp_x'" in err


def test_a_real_command_refuses_a_bad_setting(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert cli.main(["generate-cohort", str(tmp_path / "c"), "--reference-patients", "-1"]) == 2
    assert capsys.readouterr().err == "error: reference_patients must be within 0..50 (per label)\n"


def _parser_raising(exc: BaseException) -> argparse.ArgumentParser:
    def fail(_args: argparse.Namespace) -> int:
        raise exc

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=fail)
    return parser


@pytest.mark.parametrize("content", [b"not json {", b"\xff\xfe\x00binary", b'{"profiles": 3}'], ids=str)
def test_a_bad_profiles_file_is_a_user_error(tmp_path, content: bytes) -> None:
    from napari_wsirobust.diagnostics import load_profiles

    path = tmp_path / "profiles.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a profiles file"):
        load_profiles(path)
    with pytest.raises(InputError, match="cannot read"):
        load_profiles(tmp_path / "missing.json")


def test_a_missing_slide_list_is_a_user_error(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "slides.csv"
    assert cli.main(["extract", str(missing), "--cache", str(tmp_path / "cache")]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such slide list\n"
