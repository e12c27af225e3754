"""Package metadata in the form current setuptools reads without deprecation warnings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_string_that_the_build_backend_reads():
    config = tomllib.loads(PYPROJECT.read_text())
    # A table ({text = ...}) makes setuptools print a deprecation warning at every pip install.
    assert isinstance(config["project"]["license"], str)
    assert not any(c.startswith("License ::") for c in config["project"].get("classifiers", []))
    # SPDX strings need setuptools 77 in the isolated build environment.
    (setuptools,) = [r for r in config["build-system"]["requires"] if r.startswith("setuptools")]
    version = re.search(r">=\s*(\d+)", setuptools)
    assert version and int(version.group(1)) >= 77, setuptools
