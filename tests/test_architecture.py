"""The shape of the code, checked: import-linter's contracts (pyproject.toml) hold, and no project module
takes part in an import cycle. Both checks are shown to fail when a back-import is added to the graph.

The graph is grimp's (import-linter is built on it): imports inside functions count, only those under
``if TYPE_CHECKING:`` are left out."""

from __future__ import annotations

import copy
import pathlib

import grimp
import pytest
from importlinter.application.use_cases import read_user_options
from importlinter.configuration import configure
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTRACT_TYPES = {"layers": LayersContract, "forbidden": ForbiddenContract}

configure()
OPTIONS = read_user_options(config_filename=str(ROOT / "pyproject.toml"))
PACKAGES = tuple(OPTIONS.session_options["root_packages"])


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True, exclude_type_checking_imports=True)


def broken_contracts(graph: grimp.ImportGraph) -> list[str]:
    broken = []
    for options in OPTIONS.contracts_options:
        contract = CONTRACT_TYPES[options["type"]](
            name=options["name"], session_options=OPTIONS.session_options, contract_options=options
        )
        if not contract.check(copy.deepcopy(graph), verbose=False).kept:
            broken.append(contract.name)
    return broken


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every group of project modules that reach each other through imports (strongly connected
    components of two or more modules, or one that imports itself), by Tarjan's algorithm."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    edges = {
        m: sorted(d for d in graph.find_modules_directly_imported_by(m) if d.split(".")[0] in PACKAGES) for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def enter(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)

    for start in modules:
        if start in index:
            continue
        enter(start)
        work = [(start, iter(edges[start]))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    enter(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in edges[node]:
                    found.append(sorted(group))
    return found


def test_the_import_contracts_hold(graph: grimp.ImportGraph) -> None:
    assert broken_contracts(graph) == []


def test_no_project_module_is_in_an_import_cycle(graph: grimp.ImportGraph) -> None:
    assert cycles(graph) == []


@pytest.mark.parametrize(
    ("importer", "imported", "contract"),
    [
        # a lower billing area reaching up: the charges area importing the checkout it serves
        ("billing.charges.payments", "billing.sales.checkout", "Billing areas form layers"),
        # the domain reaching for the app
        ("billing.accounts.wallets", "whitebill.app", "Arrows point down"),
    ],
)
def test_a_back_import_breaks_a_contract_and_makes_a_cycle(
    graph: grimp.ImportGraph, importer: str, imported: str, contract: str
) -> None:
    assert graph.chain_exists(importer=imported, imported=importer)  # so the back-import closes a loop
    changed = copy.deepcopy(graph)
    changed.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    assert [name for name in broken_contracts(changed) if name.startswith(contract)]
    assert any(importer in group and imported in group for group in cycles(changed))
