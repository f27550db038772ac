"""The Backtest, Optimisation and Validation pages apply a dataset's funding file, as the CLI does
(a "Funding file" toggle, on by default): the same backtest read differently on a page and from
`threadx backtest` for a dataset with a funding file."""
from __future__ import annotations

import pandas as pd
import pytest
from apptest_helpers import open_page, run_until, set_ranges, texts
from candles import funded_dataset

import threadx
from threadx.data.funding import stored_funding, stored_record, write_funding

NAME, BARE = "test/AAA_USDT-1h", "test/BBB_USDT-1h"

pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


@pytest.fixture
def funding_file(workspace):
    """AAA with 0.2 % funding per 8 h beside its candles; BBB without a funding file."""
    folder = workspace / "data" / "test"
    funded_dataset(folder, "AAA_USDT", seed=21, rate=0.002)
    funded_dataset(folder, "BBB_USDT", seed=22, rate=None)
    return folder / "AAA_USDT-funding.parquet"


def test_the_backtest_page_applies_the_funding_file_and_a_link_keeps_its_rates(funding_file):
    at = open_page("2_Backtest.py", dataset=NAME, strategy="ma_crossover")
    assert at.toggle(key="bt_funding").value is True
    assert "Funding: AAA_USDT-funding.parquet, beside the candles." in texts(at.caption)
    at.button(key="bt_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = at.session_state["backtest"]
    result, bt_id = shown["result"], shown["bt_id"]
    expected = threadx.backtest(threadx.load_ohlcv(NAME), "ma_crossover", result.params,
                                funding=stored_funding(NAME))  # as `threadx backtest --data test/AAA_USDT-1h`
    assert result.metrics == expected.metrics and result.metrics["total_funding"] != 0.0
    assert "funding AAA_USDT-funding.parquet (" in texts(at.caption)
    assert "The form differs" not in texts(at.info)
    # the link's request holds the record of the rows it ran with, not "the stored file"
    from threadx.ui.workspace import load_backtest

    request, _ = load_backtest(bt_id)
    assert stored_record(request.engine_options["funding"])["sha"] == result.meta["funding"]["fingerprint"]

    at.toggle(key="bt_funding").set_value(False).run()
    assert "funding none here, the stored file in the result" in texts(at.info), texts(at.info)
    at.button(key="bt_run").click().run()
    unfunded = at.session_state["backtest"]["result"]
    assert unfunded.metrics["total_funding"] == 0.0
    assert unfunded.metrics == threadx.backtest(threadx.load_ohlcv(NAME), "ma_crossover", result.params).metrics

    # the funding file fetched again with other rates: the first link says so instead of other figures
    write_funding(pd.Series(0.0005, index=stored_funding(NAME).index), funding_file)
    again = open_page("2_Backtest.py", bt=bt_id)
    assert "backtest" not in again.session_state
    assert any("changed since this run" in w.value for w in again.warning), texts(again.warning)


def test_a_dataset_without_a_funding_file_says_so_and_reads_as_no_funding(funding_file):
    at = open_page("2_Backtest.py", dataset=BARE, strategy="ma_crossover")
    assert any(c.value.startswith("Funding: this dataset has no funding file") for c in at.caption)
    at.button(key="bt_run").click().run()
    result = at.session_state["backtest"]["result"]
    assert result.metrics["total_funding"] == 0.0 and result.meta["options"]["funding"] is None
    assert "The form differs" not in texts(at.info), texts(at.info)  # (on, and no file: none, as it ran)
    # its link ran without funding: it does so once a funding file comes (it ran "stored" and paid it)
    from threadx.ui.workspace import load_backtest

    bt_id = at.session_state["backtest"]["bt_id"]
    assert load_backtest(bt_id)[0].engine_options["funding"] is None
    index = stored_funding(NAME).index
    write_funding(pd.Series(0.002, index=index), funding_file.parent / "BBB_USDT-funding.parquet")
    again = open_page("2_Backtest.py", bt=bt_id)
    reopened = again.session_state["backtest"]["result"]
    assert reopened.metrics == result.metrics and again.toggle(key="bt_funding").value is False
    assert "The form differs" not in texts(again.info), texts(again.info)


def test_a_sweep_launched_from_the_page_pays_the_funding_file(funding_file):
    from threadx.optimize.store import ResultStore

    at = open_page("3_Optimisation.py", dataset=NAME, strategy="ma_crossover")
    assert at.toggle(key="opt_funding").value is True
    set_ranges(at, "opt:ma_crossover", {"fast_period": (5, 10, 5), "slow_period": (40, 60, 20)})
    at.button(key="opt_launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at = run_until(at, lambda a: bool(a.session_state["sweep_run"]) if "sweep_run" in a.session_state else False)
    run = ResultStore().load(at.session_state["sweep_run"])
    assert stored_record(run.manifest["engine"]["funding"]) is not None
    row = run.results.iloc[0]
    params = {k: row[k] for k in run.manifest["param_names"]}
    expected = threadx.backtest(threadx.load_ohlcv(NAME), "ma_crossover", params, funding=stored_funding(NAME),
                                fee_bps=run.manifest["engine"]["fee_bps"], fill=run.manifest["engine"]["fill"])
    assert row["total_return"] == expected.metrics["total_return"] and expected.metrics["total_funding"] != 0.0
    at.run()
    assert "funding AAA_USDT-funding.parquet (" in texts(at.caption), texts(at.caption)


def test_the_validation_pages_walk_forward_takes_the_funding_toggle(funding_file, workspace):
    at = open_page("4_Validation.py", dataset=NAME, strategy="ma_crossover")
    assert at.toggle(key="wf_funding").value is True
    assert "Funding: AAA_USDT-funding.parquet, beside the candles." in texts(at.caption)
    at.toggle(key="wf_funding").set_value(False).run()
    assert "Funding:" not in texts(at.caption)
    at.toggle(key="wf_funding").set_value(True).run()
    at.button(key="wf_launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    from threadx.ui.jobs import JobRegistry

    registry = JobRegistry()
    job = registry.get(at.session_state["wf_job"])
    registry.kill(job.job_id, force=True)
    assert job.params["engine_options"]["funding"] == "stored"  # (the job's request, as stored)
    from threadx.requests import WalkForwardRequest

    paid = WalkForwardRequest.from_dict(job.params).walk_forward_kwargs()["funding"]  # what the job runs with
    assert paid.equals(stored_funding(NAME))


def test_the_research_form_applies_the_funding_files_unless_switched_off(funding_file):
    from threadx.ui.jobs import JobRegistry

    at = open_page("7_Research.py", strategy="ma_crossover")
    at.multiselect(key="rs_datasets").set_value([NAME, BARE]).run()
    assert at.toggle(key="rs_funding").value is True
    assert "Each dataset pays its funding file, where it has one." in texts(at.caption)
    at.toggle(key="rs_funding").set_value(False).run()
    assert "No funding." in texts(at.caption)
    at.button(key="rs_launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    registry = JobRegistry()
    job = registry.get(at.session_state["rs_job"])
    registry.kill(job.job_id, force=True)
    assert job.params["options"]["engine_options"] == {"funding": None}  # (research() defaults to the files)


def test_a_run_on_a_file_with_a_funding_file_beside_it_reopens_without_a_false_difference(workspace):
    """A sweep on a file outside the data folder, with a funding file beside it (as the CLI runs
    it): Open in Backtest said "funding none here" (it looked for the file beside the run's name)."""
    from streamlit.testing.v1 import AppTest

    from apptest_helpers import ROOT
    from threadx.requests import BacktestRequest

    path = workspace / "elsewhere" / "SOL_USDT-1h.parquet"
    funded_dataset(path.parent, "SOL_USDT", seed=23, rate=0.001, days=120)
    run = threadx.sweep(threadx.load_ohlcv(str(path)), "ma_crossover", {"fast_period": [5, 10], "slow_period": [40]},
                        funding=stored_funding(str(path)), store=workspace / "results", run_id="onfile",
                        executor="inline", workers=1)
    best = {k: run.top(1).iloc[0][k] for k in ("fast_period", "slow_period")}
    at = AppTest.from_file(str(ROOT / "views" / "2_Backtest.py"), default_timeout=120)
    at.session_state["open_in_backtest"] = {"request": BacktestRequest.from_manifest(run.manifest, best).to_dict(),
                                            "run_id": "onfile"}
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.session_state["backtest"]["result"].metrics["total_funding"] != 0.0
    assert at.toggle(key="bt_funding").value is True
    assert "Funding: SOL_USDT-funding.parquet, beside the candles." in texts(at.caption)
    assert "The form differs" not in texts(at.info), texts(at.info)
