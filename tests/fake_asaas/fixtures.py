"""Pytest fixtures for the fake Asaas. Use them from a test module or conftest with
``from tests.fake_asaas.fixtures import asaas, fake_asaas  # noqa: F401``.

* ``fake_asaas`` (session): one server for the whole session, yielding its :class:`FakeAsaasController`.
* ``asaas`` (function): the same controller, reset (no customers, payments, webhooks, events or faults)
  before the test runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_asaas.control import DEFAULT_TOKEN, FakeAsaasController, running_fake_asaas


@pytest.fixture(scope="session")
def fake_asaas() -> Iterator[FakeAsaasController]:
    with running_fake_asaas(token=DEFAULT_TOKEN) as controller:
        yield controller


@pytest.fixture
def asaas(fake_asaas: FakeAsaasController) -> Iterator[FakeAsaasController]:
    fake_asaas.reset()
    yield fake_asaas
