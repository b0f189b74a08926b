"""Hypothesis runs reproducibly: in CI every property test draws the same examples on every run,
and anywhere a failure prints what replays it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
# What a fresh process sees once the suite's conftest is loaded, as pytest loads it first.
ACTIVE = (
    "import tests.conftest; from hypothesis import settings; s = settings.default;"
    " print(s.derandomize, s.database is None, s.print_blob)"
)


def active_profile(ci: str | None, **more: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "CI"} | more
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run(
        [sys.executable, "-c", ACTIVE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_ci_profile_is_derandomized_without_an_example_database() -> None:
    ci = settings.get_profile("ci")
    assert (ci.derandomize, ci.database, ci.print_blob) == (True, None, True)
    assert settings.get_profile("dev").print_blob is True


@pytest.mark.parametrize("ci", ["true", "1"])
def test_ci_set_makes_every_property_test_derandomized(ci: str) -> None:
    assert active_profile(ci) == "True True True"


def test_outside_ci_examples_are_random_and_a_failure_prints_its_blob() -> None:
    assert active_profile(None) == "False False True"
    # Hypothesis loads a CI profile of its own on other runners' variables; the suite's CI=true rule
    # decides, whatever Hypothesis guessed.
    assert active_profile(None, GITHUB_ACTIONS="true") == "False False True"
