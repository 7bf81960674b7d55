"""Debian programs some tests need (chromium, espeak-ng), installed by the test set-up.

A program that is missing is installed with apt-get when the tests run as root under CI=true
or with GENRECTL_INSTALL_PACKAGES=1 (GENRECTL_INSTALL_CHROMIUM=1 is still read for chromium);
otherwise the test skips with the command to run. Under CI a failed install fails the test:
CI must not pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _allowed(package: str) -> bool:
    if os.environ.get("CI") == "true" or os.environ.get("GENRECTL_INSTALL_PACKAGES") == "1":
        return True
    return package == "chromium" and os.environ.get("GENRECTL_INSTALL_CHROMIUM") == "1"


def require_program(program: str, *, package: str) -> str:
    """The path of ``program``, installing Debian's ``package`` first where allowed."""
    found = shutil.which(program)
    if found:
        return found
    in_ci = os.environ.get("CI") == "true"
    if not (_allowed(package) and os.geteuid() == 0 and shutil.which("apt-get")):
        pytest.skip(
            f"{program} is not installed: `apt-get install {package}`, or run the tests as "
            "root with CI=true or GENRECTL_INSTALL_PACKAGES=1 to let them install it"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            reason = f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
            if in_ci:
                pytest.fail(reason)
            pytest.skip(reason)
    found = shutil.which(program)
    if not found:
        pytest.fail(f"{package} installed but {program} is not on PATH")
    return found
