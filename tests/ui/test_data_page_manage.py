"""Data page (issue 11): an import onto a name in use asks (replace / keep both / cancel),
the table and picker follow every change, rename and delete (confirmed), the verdict box and
the gap shading of the preview."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit")

from apptest_helpers import open_page  # noqa: E402
from candles import candles  # noqa: E402

NEW = pd.Timestamp("2024-03-01", tz="UTC")
OLD = pd.Timestamp("2017-08-17 04:00", tz="UTC")


@pytest.fixture
def stored(workspace: Path) -> Path:
    from threadx.data import write_ohlcv

    return write_ohlcv(candles(200, NEW), workspace / "data" / "binance" / "BTC_USDT-1h.parquet")


@pytest.fixture
def older(workspace: Path) -> Path:
    from threadx.data import write_ohlcv

    (workspace / "old").mkdir(exist_ok=True)  # (a file named BTC_USDT-1h-2017-2020 is imported under its label)
    return write_ohlcv(candles(26000, OLD, seed=9), workspace / "old" / "BTC_USDT-1h.parquet")


def table_names(at) -> list[str]:
    return list(at.dataframe[0].value["name"])


def rename_on_page(old: str, new: str):
    """The page with ``old`` picked and Rename pressed with ``new`` typed."""
    at = open_page("1_Data.py")
    at.selectbox(key="dataset_picker").set_value(old).run()
    at.text_input(key="data_rename_to").set_value(new).run()
    at.button(key="data_rename_go").click().run()
    return at


def start_import(older: Path):
    at = open_page("1_Data.py")
    at.text_input(key="data_path").set_value(str(older))
    at.text_input(key="data_exchange").set_value("binance")
    at.button(key="data_import").click().run()
    assert not at.exception, at.exception
    asked = " ".join(w.value for w in at.warning)
    assert "binance/BTC_USDT-1h already exists" in asked and "200 bars" in asked and "26,000 bars" in asked
    assert not [s for s in at.success if "Imported" in s.value]
    return at


def test_collision_replace(stored, older):
    at = start_import(older)
    assert stored.stat().st_size and "binance/BTC_USDT-1h" in table_names(at)
    at.button(key="data_collision_replace").click().run()
    assert not at.exception, at.exception
    assert any("Replaced binance/BTC_USDT-1h with 26,000 bars" in s.value for s in at.success)
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["binance/BTC_USDT-1h", "bars"] == 26000  # the table shows the new data
    assert at.selectbox(key="dataset_picker").value == "binance/BTC_USDT-1h"
    assert not [w for w in at.warning if "already exists" in w.value]  # the question is answered


def test_collision_keep_both_is_the_primary_answer_and_replace_says_what_it_loses(stored, older):
    """Replace, which overwrites the stored dataset, was the prominent (primary) button."""
    at = start_import(older)
    assert at.button(key="data_collision_keep").proto.type == "primary"
    assert at.button(key="data_collision_replace").proto.type == "secondary"
    asked = " ".join(w.value for w in at.warning)
    assert "**Replace** overwrites binance/BTC_USDT-1h" in asked and "its 200 bars are lost" in asked, asked
    assert "cannot be undone" in at.button(key="data_collision_replace").proto.help


def test_collision_keep_both_under_a_label(stored, older):
    before = stored.read_bytes()
    at = start_import(older)
    assert at.text_input(key="data_collision_label").value == "2017-2020"  # the new file's years
    at.button(key="data_collision_keep").click().run()
    assert not at.exception, at.exception
    assert any("into binance/BTC_USDT-1h-2017-2020" in s.value for s in at.success)
    names = table_names(at)
    assert "binance/BTC_USDT-1h" in names and "binance/BTC_USDT-1h-2017-2020" in names
    assert "binance/BTC_USDT-1h-2017-2020" in at.selectbox(key="dataset_picker").options
    assert stored.read_bytes() == before


def test_collision_keep_both_without_a_label_says_one_is_needed(stored, older):
    """An emptied label met the same name again: the same question came back with no word why."""
    before = stored.read_bytes()
    at = start_import(older)
    at.text_input(key="data_collision_label").set_value("  ")
    at.button(key="data_collision_keep").click().run()
    assert not at.exception, at.exception
    assert any("Keep both needs a label" in w.value and "binance/BTC_USDT-1h-LABEL" in w.value for w in at.warning)
    assert stored.read_bytes() == before and sorted(p.name for p in stored.parent.iterdir()) == ["BTC_USDT-1h.parquet"]


def test_collision_keep_both_with_a_bad_label_keeps_the_choice_then_a_good_one_imports(stored, older):
    """After Keep both with the label '../x' (refused, one error), the choice was gone on the next
    run: the corrected label and Keep both did nothing, and nothing said so."""
    before = stored.read_bytes()
    at = start_import(older)
    at.text_input(key="data_collision_label").set_value("../x")
    at.button(key="data_collision_keep").click().run()
    assert not at.exception, at.exception
    assert any("Import failed: invalid dataset label '../x'" in e.value for e in at.error)
    assert {"data_collision_replace", "data_collision_keep"} <= {b.key for b in at.button}  # the choice stays
    at.text_input(key="data_collision_label").set_value("good").run()  # (editing the label reruns the page)
    assert any("already exists" in w.value for w in at.warning)
    at.button(key="data_collision_keep").click().run()
    assert not at.exception, at.exception
    assert any("into binance/BTC_USDT-1h-good" in s.value for s in at.success), [e.value for e in at.error]
    assert sorted(p.name for p in stored.parent.iterdir()) == ["BTC_USDT-1h-good.parquet", "BTC_USDT-1h.parquet"]
    assert stored.read_bytes() == before


def test_collision_cancel_writes_nothing(stored, older):
    before = stored.read_bytes()
    at = start_import(older)
    at.button(key="data_collision_cancel").click().run()
    assert not at.exception, at.exception
    assert any("cancelled" in i.value for i in at.info)
    # the choice is gone at once (its buttons stayed under the notice, and Replace then did nothing)
    assert not {"data_collision_replace", "data_collision_keep"} & {b.key for b in at.button}
    assert stored.read_bytes() == before
    assert sorted(p.name for p in stored.parent.iterdir()) == ["BTC_USDT-1h.parquet"]
    at.run()
    assert not [w for w in at.warning if "already exists" in w.value]  # the question is gone


def test_a_new_import_shows_up_in_the_table_and_the_picker_at_once(workspace):
    source = workspace / "ABC_USDT-1h.csv"
    candles(100, NEW).reset_index().to_csv(source, index=False)
    at = open_page("1_Data.py")
    assert "local/ABC_USDT-1h" not in table_names(at)
    at.text_input(key="data_path").set_value(str(source))
    at.button(key="data_import").click().run()
    assert not at.exception, at.exception
    assert "local/ABC_USDT-1h" in table_names(at)
    assert at.selectbox(key="dataset_picker").value == "local/ABC_USDT-1h"


def test_rename_then_delete_with_confirmation(stored):
    at = rename_on_page("binance/BTC_USDT-1h", "binance/BTC_USDT-1h-2024")
    assert not at.exception, at.exception
    assert any("Renamed binance/BTC_USDT-1h to binance/BTC_USDT-1h-2024" in s.value for s in at.success)
    assert "binance/BTC_USDT-1h-2024" in table_names(at) and "binance/BTC_USDT-1h" not in table_names(at)
    assert at.selectbox(key="dataset_picker").value == "binance/BTC_USDT-1h-2024"

    renamed = stored.with_name("BTC_USDT-1h-2024.parquet")
    at.button(key="data_delete").click().run()
    assert any("cannot be undone" in w.value for w in at.warning) and renamed.exists()  # asked, not done
    at.button(key="data_delete_cancel").click().run()
    assert renamed.exists() and not [w for w in at.warning if "cannot be undone" in w.value]
    at.button(key="data_delete").click().run()
    at.button(key="data_delete_confirm").click().run()
    assert not at.exception, at.exception
    assert not renamed.exists()
    assert any("Deleted binance/BTC_USDT-1h-2024" in s.value for s in at.success)
    assert "binance/BTC_USDT-1h-2024" not in table_names(at)
    assert at.selectbox(key="dataset_picker").value == "synthetic/BTC_USDT-1h"


def test_rename_onto_the_sample_name_is_refused(stored):
    at = rename_on_page("binance/BTC_USDT-1h", "synthetic/BTC_USDT-1h")
    assert any("Rename failed" in e.value and "synthetic sample" in e.value for e in at.error)
    assert stored.exists()


def test_the_sample_cannot_be_renamed_or_deleted_on_the_page():
    at = open_page("1_Data.py")
    assert at.selectbox(key="dataset_picker").value == "synthetic/BTC_USDT-1h"
    assert any("cannot be renamed or deleted" in i.value for i in at.info)
    assert not [b for b in at.button if b.key in ("data_delete", "data_rename_go")]


def test_verdict_box_and_gap_shading(workspace):
    from threadx.data import write_ohlcv

    df = candles(300, NEW)
    df = df.drop(df.index[100:132])
    write_ohlcv(df, workspace / "data" / "local" / "GAP_USDT-1h.parquet")
    at = open_page("1_Data.py")
    assert any("GREEN" in s.value for s in at.success)  # the synthetic sample
    at.selectbox(key="dataset_picker").set_value("local/GAP_USDT-1h").run()
    assert not at.exception, at.exception
    amber = [w.value for w in at.warning if "AMBER" in w.value]
    assert amber and "32 missing bar(s) in 1 gap(s)" in amber[0]
    assert "1 warning(s)\n" in amber[0]  # every warning is a bullet here: no "notable" count
    figure = at.get("plotly_chart")[0].proto.spec
    assert '"name":"gap"' in figure.replace(" ", "")


def test_the_verdict_box_says_which_warnings_it_lists(workspace):
    """"4 warning(s)" over 3 bullets: a spike at crypto's usual rate is a warning but no reason
    for the amber light, and the box did not say why it was missing."""
    from threadx.data import write_ohlcv

    df = candles(600, NEW)
    df.iloc[400, df.columns.get_loc("close")] *= 1.3  # one spike (0.2 % of the bars: not notable)
    df.iloc[400, df.columns.get_loc("high")] = df.iloc[400][["open", "close"]].max() * 1.001
    df.iloc[401, df.columns.get_loc("open")] = df.iloc[400]["close"]
    df.iloc[401, df.columns.get_loc("high")] = df.iloc[401][["open", "close"]].max() * 1.001
    df.iloc[401, df.columns.get_loc("low")] = df.iloc[401][["open", "close"]].min() * 0.999
    df = df.drop(df.index[100:110])
    write_ohlcv(df, workspace / "data" / "local" / "SPK_USDT-1h.parquet")
    at = open_page("1_Data.py")
    at.selectbox(key="dataset_picker").set_value("local/SPK_USDT-1h").run()
    amber = [w.value for w in at.warning if "AMBER" in w.value]
    assert amber and "2 warning(s) (1 notable, below; all in the report)" in amber[0], amber


def test_an_invalid_stored_file_is_red_and_can_be_deleted(workspace):
    bad = workspace / "data" / "local" / "INF_USDT-1h.csv"
    bad.parent.mkdir(parents=True)
    frame = candles(100, NEW)
    frame.iloc[5, 1] = np.inf
    frame.reset_index().to_csv(bad, index=False)
    at = open_page("1_Data.py")
    at.selectbox(key="dataset_picker").set_value("local/INF_USDT-1h").run()
    assert not at.exception, at.exception
    assert any("RED" in e.value and "infinite" in e.value for e in at.error)
    assert any("Cannot load local/INF_USDT-1h" in e.value for e in at.error)
    at.button(key="data_delete").click().run()
    at.button(key="data_delete_confirm").click().run()
    assert not bad.exists() and "local/INF_USDT-1h" not in table_names(at)


def test_resample_refuses_an_existing_target_unless_replace_is_ticked(stored, workspace):
    from threadx.data import write_ohlcv

    four = write_ohlcv(candles(10, NEW).iloc[::4], workspace / "data" / "binance" / "BTC_USDT-4h.parquet")
    before = four.read_bytes()
    at = open_page("1_Data.py")
    at.selectbox(key="dataset_picker").set_value("binance/BTC_USDT-1h").run()
    at.selectbox(key="resample_tf").set_value("4h").run()
    at.button(key="resample_go").click().run()
    assert any("Resample failed" in e.value and "binance/BTC_USDT-4h already exists" in e.value for e in at.error)
    assert four.read_bytes() == before
    at.checkbox(key="resample_replace").check().run()
    at.button(key="resample_go").click().run()
    assert any("Wrote 50 complete 4h bars to binance/BTC_USDT-4h" in s.value for s in at.success)
    assert four.read_bytes() != before


def test_resample_offers_only_timeframes_coarser_than_the_dataset_s(stored, workspace):
    """The Resample box offered 1h and 15m for a 1h dataset, and with Replace ticked rewrote it onto
    itself ("Wrote 200 complete 1h bars")."""
    from threadx.data import write_ohlcv

    at = open_page("1_Data.py")
    at.selectbox(key="dataset_picker").set_value("binance/BTC_USDT-1h").run()
    assert at.selectbox(key="resample_tf").options == ["4h", "1d", "1w"]
    write_ohlcv(candles(200, NEW).iloc[::3], workspace / "data" / "binance" / "BTC_USDT-3h.parquet")
    at.run()
    at.selectbox(key="dataset_picker").set_value("binance/BTC_USDT-3h").run()
    assert at.selectbox(key="resample_tf").options == ["1d", "1w"]  # (4h is no whole number of 3h bars)
    write_ohlcv(candles(200, NEW).iloc[::168], workspace / "data" / "binance" / "BTC_USDT-1w.parquet")
    at.run()
    at.selectbox(key="dataset_picker").set_value("binance/BTC_USDT-1w").run()
    assert not at.exception, at.exception
    assert "resample_go" not in {b.key for b in at.button}
    assert any("No coarser timeframe" in i.value for i in at.info)


def test_resample_writes_nothing_that_validation_refuses(workspace):
    """The page wrote a 4h dataset with an infinite volume (two 1e308 volumes summed): red in
    the list, refused by every backtest. It now says why and writes nothing."""
    from threadx.data import write_ohlcv

    frame = candles(200, NEW)
    frame.iloc[4:6, frame.columns.get_loc("volume")] = 1e308
    write_ohlcv(frame, workspace / "data" / "binance" / "HV_USDT-1h.parquet")
    at = open_page("1_Data.py")
    at.selectbox(key="dataset_picker").set_value("binance/HV_USDT-1h").run()
    at.selectbox(key="resample_tf").set_value("4h").run()
    at.button(key="resample_go").click().run()
    assert not at.exception, at.exception
    assert any("Resample failed" in e.value and "resampled to 4h: not written" in e.value and "infinite" in e.value
               for e in at.error), [e.value for e in at.error]
    assert not (workspace / "data" / "binance" / "HV_USDT-4h.parquet").exists()


def test_delete_confirmation_names_the_stored_results_that_ran_on_it(stored, workspace):
    import threadx

    threadx.sweep(threadx.load_ohlcv("binance/BTC_USDT-1h"), "ma_crossover", {"fast_period": [5], "slow_period": [30]},
                  store=workspace / "results", run_id="ran-on-it", executor="inline", workers=1)
    at = open_page("1_Data.py")
    at.selectbox(key="dataset_picker").set_value("binance/BTC_USDT-1h").run()
    at.button(key="data_delete").click().run()
    asked = [w.value for w in at.warning if "cannot be undone" in w.value]
    assert asked and "1 stored result ran on it (sweep ran-on-it): it stays readable" in asked[0], asked
    at.button(key="data_delete_cancel").click().run()  # (the note vanished without a word)
    assert "Delete cancelled: binance/BTC_USDT-1h is kept." in [s.value for s in at.success]
    assert (workspace / "data" / "binance" / "BTC_USDT-1h.parquet").exists()


def test_rename_names_the_stored_results_that_ran_on_it_and_warns_of_another_market(stored, workspace):
    """The page's Rename said nothing of the sweep that ran on the dataset (it then read "dataset
    ... is gone"), nor that BTC's bars were now named ETH's."""
    import threadx

    threadx.sweep(threadx.load_ohlcv("binance/BTC_USDT-1h"), "ma_crossover", {"fast_period": [5], "slow_period": [30]},
                  store=workspace / "results", run_id="ran-on-it", executor="inline", workers=1)
    at = rename_on_page("binance/BTC_USDT-1h", "binance/ETH_USDT-1h")
    assert not at.exception, at.exception
    assert any("Renamed binance/BTC_USDT-1h to binance/ETH_USDT-1h" in s.value for s in at.success)
    said = " ".join(w.value for w in at.warning)
    assert "The bars stay BTC_USDT's, now named ETH_USDT" in said, said
    assert ("1 stored result ran on it (sweep ran-on-it): it stays readable but cannot be resumed, validated or "
            "re-run under its new name (rename it back to binance/BTC_USDT-1h for that)") in said, said
    at.run()  # said once, not on every later run
    assert not [w for w in at.warning if "stored result" in w.value]


def test_a_keep_both_label_taken_too_asks_about_that_name_and_replace_overwrites_that_one(stored, older, workspace):
    """Keep both under a label in use too named the labelled dataset as the one Replace overwrites,
    and Replace then overwrote the unlabelled one (200 bars lost, the named one untouched)."""
    from threadx.data import write_ohlcv

    labelled = write_ohlcv(candles(50, NEW), workspace / "data" / "binance" / "BTC_USDT-1h-2017-2020.parquet")
    at = start_import(older)
    at.button(key="data_collision_keep").click().run()  # its default label, 2017-2020: taken too
    assert not at.exception, at.exception
    asked = " ".join(w.value for w in at.warning)
    assert "binance/BTC_USDT-1h-2017-2020 already exists" in asked, asked
    assert "overwrites binance/BTC_USDT-1h-2017-2020" in asked and "stores it as binance/BTC_USDT-1h-LABEL" in asked
    base, other = stored.read_bytes(), labelled.read_bytes()
    at.button(key="data_collision_replace").click().run()
    assert not at.exception, at.exception
    assert any("Replaced binance/BTC_USDT-1h-2017-2020 with 26,000 bars" in s.value for s in at.success), \
        [e.value for e in at.error]
    assert stored.read_bytes() == base and labelled.read_bytes() != other
