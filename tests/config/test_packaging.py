"""Packaging: one version, package data that exists, the licence the metadata names."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import chatbridge

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_is_kept_in_one_place() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project
    assert project["dynamic"] == ["version"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "chatbridge.__version__"
    # the installed metadata was built from it
    assert importlib.metadata.version("chatbridge") == chatbridge.__version__


def test_cli_prints_the_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatbridge", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == f"chatbridge {chatbridge.__version__}\n"


def test_every_package_data_pattern_matches_a_file() -> None:
    package = ROOT / "chatbridge"
    for pattern in PYPROJECT["tool"]["setuptools"]["package-data"]["chatbridge"]:
        assert list(package.glob(pattern)), f"package data {pattern!r} matches no file"


def test_license_file_is_the_license_the_metadata_names() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 The Chatbridge authors\n")


def test_changelog_has_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert f"\n## {chatbridge.__version__} - " in text


TEST_TOOLS = {"pytest", "playwright", "mypy", "schemathesis", "ruff", "hypothesis"}


def _names(requirements: list[str]) -> set[str]:
    import re

    return {re.split(r"[<>=!\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_production_install_has_no_test_tools() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not (_names(PYPROJECT["project"]["dependencies"] + extras["server"]) & TEST_TOOLS)
    assert TEST_TOOLS <= _names(extras["test"])
    install = (ROOT / "scripts" / "install").read_text()
    assert '-c "$root/constraints.txt" "$root[server]"' in install
    assert "[server,test]" in (ROOT / "scripts" / "bootstrap").read_text()
