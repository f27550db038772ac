"""Click-to-result timings of the served workstation in headless Chromium, against the goals.

    python benchmarks/ui_timing.py                      # the synthetic sample (17.5k 1h bars)
    python benchmarks/ui_timing.py --data ../shared/data/binance/BTC_USDT-1h.parquet

The app is started as ``make app`` starts it (sample data, kernel warm-up, streamlit) in a
temporary data/results root. A click counts as answered when the browser has received
Streamlit's ``script_finished`` message of the last script run it triggered (followed for
0.4 s, for pages that rerun themselves) and the page has painted twice after it.
Each figure is printed beside its goal (issue 11); times are medians of ``--repeat`` tries.
Needs Playwright's Python package and Debian's ``chromium``.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from browser_driver import BROWSER_ARGS, CHROMIUM, open_app, pick_option, serve, settle  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

QUIET_S = 0.4  # a script run that starts within this long after one finishes belongs to the same click


class ScriptRuns:
    """Times at which the browser received each ``script_finished`` message."""

    def __init__(self, page) -> None:
        self.page = page
        self.finished: list[float] = []
        page.on("websocket", self._attach)

    def _attach(self, ws) -> None:
        ws.on("framereceived", self._frame)

    def _frame(self, payload) -> None:
        if isinstance(payload, str):
            return
        msg = ForwardMsg()
        try:
            msg.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - not a ForwardMsg
            return
        if msg.WhichOneof("type") == "script_finished":
            self.finished.append(time.perf_counter())

    def answer(self, action, timeout_s: float = 120.0) -> float:
        """Seconds from ``action()`` (once the app is idle) to the paint after the last script run
        it triggered."""
        settle(self.page)
        start = time.perf_counter()
        seen = len(self.finished)
        action()
        painted = None
        while True:
            deadline = time.perf_counter() + (timeout_s if painted is None else QUIET_S)
            while len(self.finished) == seen and time.perf_counter() < deadline:
                self.page.wait_for_timeout(10)
            if len(self.finished) == seen:  # quiet: the click's work is over
                if painted is None:
                    raise TimeoutError("no script run finished")
                return painted - start
            seen = len(self.finished)
            self.page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            painted = time.perf_counter()


def median_of(runs: ScriptRuns, action, repeat: int) -> float:
    return statistics.median(runs.answer(action) for _ in range(repeat))


def goal_line(what: str, seconds: float, goal: float | None) -> str:
    verdict = "" if goal is None else ("  ok" if seconds <= goal else "  OVER")
    target = "" if goal is None else f"goal <= {goal:.1f} s"
    return f"{what:<52} {seconds:7.2f} s   {target}{verdict}"


def import_dataset(env: dict, path: Path) -> str:
    """Import ``path`` into the served data root as ``binance/<file stem>``; returns that name."""
    subprocess.run([sys.executable, "-m", "threadx.cli", "data", "import", str(path), "--exchange", "binance"],
                   cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return f"binance/{path.name.split('.')[0]}"


def time_a_sweep(page, runs: ScriptRuns) -> list[str]:
    """Launch the Optimisation page's default grid of ma_crossover: how soon the job's phase
    shows, what it says, when the run is shown, and that Stop and the sidebar entry go away."""
    page.get_by_role("link", name="Optimisation").click()
    page.get_by_role("heading", name="Optimisation").wait_for(timeout=60_000)
    pick_option(page, "opt_strategy", "ma_crossover")
    combos = page.locator("[data-testid=stAlertContentInfo]").first.inner_text().split(" combos")[0].strip("* ")
    settle(page)
    start = time.perf_counter()
    page.get_by_role("button", name="Launch").click()
    progress = page.locator("[data-testid=stProgress]").first
    progress.wait_for(timeout=30_000)
    first_s = time.perf_counter() - start
    first_text = page.locator("[data-testid=stProgress]").first.inner_text(timeout=5_000).strip()
    page.get_by_role("button", name="Open in Backtest").wait_for(timeout=600_000)
    done_s = time.perf_counter() - start
    settle(page)
    page.wait_for_timeout(2500)  # a sidebar refresh
    stop_left = page.get_by_role("button", name="Stop", exact=True).count()
    sidebar_jobs = page.locator("[data-testid=stSidebar] [data-testid=stProgress]").count()
    return [goal_line(f"sweep of {combos} combos: Launch -> its phase on screen", first_s, 1.0),
            f"{'':<52} first text: {first_text[:90]!r}",
            goal_line(f"sweep of {combos} combos: Launch -> run shown", done_s, None),
            f"{'after the sweep: Stop buttons shown':<52} {stop_left:7d}     goal 0{'  ok' if not stop_left else '  OVER'}",
            f"{'after the sweep: jobs listed in the sidebar':<52} {sidebar_jobs:7d}     goal 0"
            f"{'  ok' if not sidebar_jobs else '  OVER'}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="an OHLCV file to time on (imported as binance/...)")
    parser.add_argument("--repeat", type=int, default=5, help="tries per figure (median)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit("Debian's chromium is needed (apt-get install chromium)")

    lines = []
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp), Path(tmp) / "server.log") as served:
        lines.append(goal_line("make app: kernel warm-up + sample (before the server)", served["warmup_s"], None))
        dataset = import_dataset(served["env"], args.data) if args.data else None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1600})
            runs = ScriptRuns(page)
            open_app(page, served["url"])
            page.get_by_role("button", name="Run backtest").wait_for(timeout=90_000)
            settle(page)
            lines.append(goal_line("server start -> Backtest page interactive", time.time() - served["started"],
                                   None))
            if dataset:
                pick_option(page, "dataset_picker", dataset)
            bars = dataset or "synthetic/BTC_USDT-1h"
            run = page.get_by_role("button", name="Run backtest")
            lines.append(goal_line(f"first backtest after start ({bars})", runs.answer(run.click), 5.0))
            lines.append(goal_line("backtest re-run (same params)", median_of(runs, run.click, args.repeat), 1.0))
            param = page.locator(".st-key-bt-bb_atr-entry_z input")  # bb_atr's entry threshold
            if param.count():
                times = []
                for k in range(args.repeat):  # a new value, then Run: new figures, the click is timed
                    param.fill(f"{1.5 + 0.1 * (k + 1):.1f}")
                    param.press("Enter")
                    times.append(runs.answer(run.click))
                lines.append(goal_line("backtest re-run with a param changed", statistics.median(times), 1.0))

            def switch(name: str):
                return lambda: page.get_by_role("link", name=name).click()

            to_opt = []
            to_bt = []
            for _ in range(args.repeat):
                to_opt.append(runs.answer(switch("Optimisation")))
                to_bt.append(runs.answer(switch("Backtest")))
            lines.append(goal_line("page switch Backtest -> Optimisation (result loaded)", statistics.median(to_opt),
                                   1.0))
            lines.append(goal_line("page switch Optimisation -> Backtest (result loaded)", statistics.median(to_bt),
                                   1.0))
            lines += time_a_sweep(page, runs)
            browser.close()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
