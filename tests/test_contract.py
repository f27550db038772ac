"""The contract between strategies and the engine (threadx/contract.py): neither package
imports the other, and both speak through the contract's flags, rules, levels and inputs."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import threadx.contract as contract
from threadx.engine import layout

PACKAGE = Path(contract.__file__).parent


def _imports(folder: str) -> dict[str, set[str]]:
    """Every module a file of ``threadx/<folder>`` imports (absolute names), by file."""
    found: dict[str, set[str]] = {}
    for path in sorted((PACKAGE / folder).glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[path.name] = names
    return found


def test_the_engine_imports_no_strategy_module():
    offenders = {f: sorted(m for m in mods if m.startswith("threadx.strategy")) for f, mods in _imports("engine").items()}
    assert not any(offenders.values()), offenders


def test_strategies_import_no_engine_module():
    offenders = {f: sorted(m for m in mods if m.startswith(("threadx.engine", "threadx.optimize", "threadx.gpu")))
                 for f, mods in _imports("strategy").items()}
    assert not any(offenders.values()), offenders


def test_the_kernel_reads_the_contract_flags():
    assert (layout.SIG_ENTER_LONG, layout.SIG_EXIT_LONG, layout.SIG_ENTER_SHORT, layout.SIG_EXIT_SHORT) == (
        contract.SIG_ENTER_LONG, contract.SIG_EXIT_LONG, contract.SIG_ENTER_SHORT, contract.SIG_EXIT_SHORT)
    flags = [contract.SIG_ENTER_LONG, contract.SIG_EXIT_LONG, contract.SIG_ENTER_SHORT, contract.SIG_EXIT_SHORT]
    assert len({*flags}) == 4 and all(f & (f - 1) == 0 for f in flags)  # distinct single bits
    assert np.bitwise_or.reduce(np.array(flags, np.uint8)) == 15  # one uint8 holds them all


def test_kernel_inputs_are_named_in_the_kernel_order():
    from threadx.engine import kernel

    code = kernel.run_fast.py_func.__code__
    kernel_names = code.co_varnames[:code.co_argcount]
    assert len(contract.KernelInputs._fields) == len(kernel_names) == 11
    short = {"open": "o", "high": "h", "low": "l", "close": "c", "signals": "sig", "band_lo": "blo",
             "band_mid": "bmid", "band_hi": "bhi", "params": "p"}
    assert tuple(short.get(f, f) for f in contract.KernelInputs._fields) == kernel_names
