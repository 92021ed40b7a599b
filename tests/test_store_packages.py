"""Finding the ArcadeDB package the embedded store runs on: arcadedb-jvm (pre-release, with
Studio) or arcadedb-embedded (final release, no Studio), laid out as each really is."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from opsgraph.graph.embedded import (
    STORE_PACKAGES,
    TESTED_VERSIONS,
    EmbeddedServerError,
    find_runtime,
)

# What each wheel installs (checked against arcadedb-jvm 26.11.1.dev2 and arcadedb-embedded
# 26.10.2.post1): the dist-info folder, the import package with jre/ and jars/, and Studio's
# jar only in arcadedb-jvm.
LAYOUTS = {
    "arcadedb-jvm": ("26.11.1.dev2", "arcadedb", "26.11.1-SNAPSHOT", True),
    "arcadedb-embedded": ("26.10.2.post1", "arcadedb_embedded", "26.10.2", False),
}


def _lay_out(site: Path, package: str, *, java: bool = True) -> Path:
    """A site-packages folder holding ``package`` as its wheel installs it; returns its base."""
    version, import_name, server, studio = LAYOUTS[package]
    info = site / f"{package.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    base = site / import_name
    (base / "jars").mkdir(parents=True)
    (base / "jre" / "bin").mkdir(parents=True)
    if java:
        (base / "jre" / "bin" / "java").write_text("#!/bin/sh\n")
    for jar in (f"arcadedb-server-{server}.jar", f"arcadedb-bolt-{server}-shaded.jar"):
        (base / "jars" / jar).write_bytes(b"PK")
    if studio:
        (base / "jars" / f"arcadedb-studio-{server}.jar").write_bytes(b"PK")
    return base


def test_the_final_release_is_found_under_its_own_import_name(tmp_path: Path) -> None:
    base = _lay_out(tmp_path, "arcadedb-embedded")
    runtime = find_runtime(path=[str(tmp_path)])
    assert runtime.package == "arcadedb-embedded" and runtime.version == "26.10.2.post1"
    assert runtime.java == base / "jre" / "bin" / "java"
    assert runtime.jars == base / "jars"
    assert runtime.server_version == "26.10.2"
    assert runtime.has_studio is False
    assert runtime.label == "arcadedb-embedded 26.10.2.post1 (ArcadeDB 26.10.2)"


def test_the_pre_release_is_found_with_its_studio(tmp_path: Path) -> None:
    base = _lay_out(tmp_path, "arcadedb-jvm")
    runtime = find_runtime(path=[str(tmp_path)])
    assert (runtime.package, runtime.version) == ("arcadedb-jvm", "26.11.1.dev2")
    assert runtime.jars == base / "jars" and runtime.has_studio is True
    assert runtime.server_version == "26.11.1-SNAPSHOT"


def test_with_both_installed_arcadedb_jvm_wins_unless_chosen(tmp_path: Path) -> None:
    _lay_out(tmp_path, "arcadedb-jvm")
    embedded = _lay_out(tmp_path, "arcadedb-embedded")
    assert find_runtime(path=[str(tmp_path)]).package == "arcadedb-jvm"
    chosen = find_runtime("arcadedb-embedded", path=[str(tmp_path)])
    assert chosen.package == "arcadedb-embedded" and chosen.jars == embedded / "jars"


def test_a_chosen_package_that_is_missing_is_named(tmp_path: Path) -> None:
    _lay_out(tmp_path, "arcadedb-embedded")
    with pytest.raises(EmbeddedServerError, match=r"arcadedb-jvm is not installed.*arcadedb-emb"):
        find_runtime("arcadedb-jvm", path=[str(tmp_path)])
    with pytest.raises(EmbeddedServerError, match="choose one of arcadedb-jvm, arcadedb-embedded"):
        find_runtime("arcadedb", path=[str(tmp_path)])


def test_no_package_or_a_broken_one_says_what_to_install(tmp_path: Path) -> None:
    swap = "pip uninstall -y arcadedb-jvm && pip install 'arcadedb-embedded==26.10.2.post1'"
    with pytest.raises(EmbeddedServerError, match=re.escape(swap)):
        find_runtime(path=[str(tmp_path)])
    # The native `arcadedb` build also installs an `arcadedb` import package, without a JRE.
    _lay_out(tmp_path, "arcadedb-jvm", java=False)
    with pytest.raises(EmbeddedServerError, match="has no Java runtime.*--force-reinstall"):
        find_runtime(path=[str(tmp_path)])


def test_the_installed_package_is_found_and_its_java_runs() -> None:
    installed = []
    for package in STORE_PACKAGES:
        try:
            installed.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            continue
    assert installed, "neither arcadedb-jvm nor arcadedb-embedded is installed"
    runtime = find_runtime()
    assert (runtime.package, runtime.version) == installed[0]
    assert runtime.has_studio is (runtime.package == "arcadedb-jvm")
    version = subprocess.run(
        [str(runtime.java), "-version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0, version.stderr


def test_the_pins_that_ci_installs_match_what_the_messages_say() -> None:
    """pyproject pins arcadedb-jvm and .ci/run swaps in arcadedb-embedded; the install hints
    in errors and `opsgraph studio` name the same versions."""
    root = Path(__file__).parent.parent
    pyproject = (root / "pyproject.toml").read_text()
    ci = (root / ".ci" / "run").read_text()
    assert f'"arcadedb-jvm=={TESTED_VERSIONS["arcadedb-jvm"]}"' in pyproject
    assert f"'arcadedb-embedded=={TESTED_VERSIONS['arcadedb-embedded']}'" in ci
