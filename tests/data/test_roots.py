"""Typed paths are kept under the allowed data roots: real folders and real symbolic links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tlcore.data import roots


@pytest.fixture
def layout(tmp_path) -> dict[str, Path]:
    data = tmp_path / "data"
    (data / "catsdogs" / "cats").mkdir(parents=True)
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the app")
    return {"data": data, "outside": outside, "home": tmp_path / "home"}


def test_roots_come_from_the_variable_in_order_without_duplicates(layout):
    environment = {
        roots.ROOTS_VARIABLE: os.pathsep.join([str(layout["data"]), str(layout["outside"]), str(layout["data"]), " "])
    }
    assert roots.allowed_roots(environment) == (layout["data"].resolve(), layout["outside"].resolve())


def test_default_roots_are_the_data_folder_and_home(layout, monkeypatch):
    monkeypatch.setenv("HOME", str(layout["home"]))
    environment = {roots.DATA_DIR_VARIABLE: str(layout["data"])}
    assert roots.allowed_roots(environment) == (layout["data"].resolve(), layout["home"].resolve())


def test_a_path_under_a_root_resolves(layout):
    typed = layout["data"] / "catsdogs" / ".." / "catsdogs" / "cats"
    assert roots.resolve_under_roots(typed, [layout["data"]]) == (layout["data"] / "catsdogs" / "cats").resolve()
    assert roots.resolve_under_roots(layout["data"], [layout["data"]]) == layout["data"].resolve()


@pytest.mark.parametrize("typed", ["outside", "dotdot", "symlink", "sibling-prefix"])
def test_a_path_leading_outside_is_refused_naming_the_path_and_the_roots(layout, typed):
    data = layout["data"]
    if typed == "outside":
        path = layout["outside"] / "secret.txt"
    elif typed == "dotdot":
        path = data / ".." / "private"
    elif typed == "symlink":
        path = data / "innocent"
        path.symlink_to(layout["outside"], target_is_directory=True)
    else:  # "/x/data-private" starts with the text "/x/data" but is not under it.
        path = data.parent / "data-private"
        path.mkdir()
    with pytest.raises(roots.OutsideRootsError) as refused:
        roots.resolve_under_roots(path, [data])
    message = str(refused.value)
    assert str(path) in message and str(data.resolve()) in message and roots.ROOTS_VARIABLE in message
    # The resolved path is said where it differs from the one typed ("/x (resolved to /x)" said it twice).
    resolved = path.resolve()
    assert (f"(resolved to {resolved})" in message) == (str(resolved) != str(path))


def test_an_empty_path_is_refused():
    with pytest.raises(ValueError, match="empty path"):
        roots.resolve_under_roots("  ", ["/"])
