"""Fixed layouts shared by the engine kernel and its wrappers.

The kernel takes its scalar settings as one float64 vector (``P_*`` slots), keeps its
running state in another (``S_*``), writes metrics into a third (``M_*``) and trades
into rows of a 2-D array (``T_*`` columns). Fixed vectors keep the per-bar step free
of Python objects and allocation, so the same source compiles for CPU and CUDA, and a
sweep can hand the kernel one parameter row per combo.
"""
from __future__ import annotations

from threadx.contract import (SIG_ENTER_LONG, SIG_ENTER_SHORT, SIG_EXIT_LONG, SIG_EXIT_SHORT,  # noqa: F401
                              SIG_REDUCE_LONG, SIG_REDUCE_SHORT, SIG_ADD_LONG, SIG_ADD_SHORT,
                              SIG_ENTRIES)  # (the kernel's)

# --- enums ---------------------------------------------------------------------------
FILL_NEXT_OPEN = 0
FILL_CLOSE = 1
FILL_MODES = {"next_open": FILL_NEXT_OPEN, "close": FILL_CLOSE}

SIZING_ALL_IN = 0
SIZING_FRACTION = 1
SIZING_RISK = 2
SIZING_MODES = {"all_in": SIZING_ALL_IN, "fraction": SIZING_FRACTION, "risk": SIZING_RISK}

TRAIL_NONE = 0
TRAIL_ATR = 1  # candidate = close -/+ trail_atr * atr[i]
TRAIL_PCT = 2  # candidate = close * (1 -/+ trail_pct)
TRAIL_BAND = 3  # armed once price reaches band_mid; candidate between band edge and mid
TRAIL_MODES = {"none": TRAIL_NONE, "atr": TRAIL_ATR, "pct": TRAIL_PCT, "band": TRAIL_BAND}

EXIT_SIGNAL = 0
EXIT_STOP_LOSS = 1
EXIT_TAKE_PROFIT = 2
EXIT_TRAILING_STOP = 3
EXIT_MAX_HOLD = 4
EXIT_END_OF_DATA = 5
EXIT_LIQUIDATION = 6
EXIT_REASONS = ("signal", "stop_loss", "take_profit", "trailing_stop", "max_hold", "end_of_data", "liquidation")

# --- parameter vector ----------------------------------------------------------------
P_FILL = 0
P_FEE_RATE = 1
P_SLIP_RATE = 2
P_INITIAL_CAPITAL = 3
P_SIZING = 4
P_FRACTION = 5
P_RISK = 6
P_LEVERAGE = 7
P_MIN_NOTIONAL = 8
P_STOP_PCT = 9  # stop distance as a fraction of the entry fill price (0 = off)
P_STOP_ATR = 10  # stop distance in ATRs of the signal bar (0 = off)
P_TP_PCT = 11
P_TP_ATR = 12
P_TARGET_MID = 13  # 1 = take profit when price returns to band_mid of the previous bar
P_TRAIL_MODE = 14
P_TRAIL_ATR = 15
P_TRAIL_PCT = 16
P_TRAIL_BAND_PCT = 17
P_MAX_HOLD = 18  # bars, 0 = off
P_SPACING = 19  # minimum bars between entry signals that were filled
P_OPTIMISTIC = 20  # 1 = target first when stop and target share a bar
P_USE_FUNDING = 21
P_BARS_PER_YEAR = 22
# several positions at once (SPEC §3): legs, adds, reduces and limit-level grids
P_MAX_LEGS = 23  # legs the position may hold (1 = one position)
P_ADD_SCALE = 24  # an added leg's notional as a multiple of the cycle's first leg's
P_REDUCE_FRACTION = 25  # fraction of the open quantity a reduce closes (signal or partial target)
P_PTP_PCT = 26  # partial target: fraction of the average entry price (0 = off)
P_PTP_ATR = 27  # partial target: ATRs of the cycle's first signal bar (0 = off)
P_GRID_K = 28  # limit levels per bar (0 = none)
P_GRID_SIDES = 29  # GRID_LONG / GRID_SHORT / GRID_BOTH
P_ALLOCATION = 30  # fraction of the cycle's starting equity split across the K levels
MAX_GRID_LEVELS = 6
P_GRID_PCT = 31  # .. + MAX_GRID_LEVELS: level k's offset as a fraction of the reference line
P_GRID_ATR = P_GRID_PCT + MAX_GRID_LEVELS  # .. + MAX_GRID_LEVELS: level k's offset in ATRs
# levels from the band lines, and exit signals that wait for the position to be armed
P_STOP_BAND = P_GRID_ATR + MAX_GRID_LEVELS  # 1 = a stop at the band line of the signal bar (below)
P_STOP_BAND_PCT = P_STOP_BAND + 1  # that line: this fraction of the way from the band edge to the middle band
P_PTP_BAND = P_STOP_BAND + 2  # 1 = partial target at the previous close's far band (band_hi long, band_lo short)
P_ARM_R = P_STOP_BAND + 3  # exit signals count once a close gains this many times the initial stop distance
P_ARM_BAND = P_STOP_BAND + 4  # 1 = ... or once a close is beyond the far band
# the bars of the timeframe the data spans, its gaps included (first open to last close; 0 = unknown): CAGR
# annualises over it (over the bars present, a 60-day hole read +8.30 % a year for +7.31 %, sessions +58.9 %
# for +10.2 %)
P_SPAN_BARS = P_STOP_BAND + 5
N_PARAMS = P_STOP_BAND + 6

GRID_LONG = 1  # levels below the reference line, long legs
GRID_SHORT = -1  # levels above, short legs
GRID_BOTH = 2  # both; a cycle in one direction blocks the other's levels until it ends
GRID_SIDES = {"long": GRID_LONG, "short": GRID_SHORT, "both": GRID_BOTH}

# --- state vector --------------------------------------------------------------------
S_CASH = 0
S_DIR = 1  # +1 long, -1 short, 0 flat
S_QTY = 2
S_ENTRY_PX = 3
S_ENTRY_I = 4
S_MARGIN = 5
S_ENTRY_FEE = 6
S_FUNDING = 7  # funding paid by the open trade
S_STOP = 8  # NaN = none
S_TP = 9  # fixed take-profit level, NaN = none
S_TRAILED = 10  # 1 once the trailing rule moved the stop
S_ARMED = 11  # band trailing armed
S_PEND_EXIT = 12  # next_open: exit reason + 1 pending, 0 none
S_PEND_ENTRY = 13  # next_open: +1 / -1 entry (or add) pending, 0 none
S_PEND_SIG_I = 14
S_LAST_ENTRY_SIG = 15
S_EQ_PREV = 16
S_LIQUIDATED = 17
S_RET_N = 18
S_RET_SUM = 19
S_RET_SUMSQ = 20
S_DOWN_SQ = 21
S_PEAK = 22
S_PEAK_I = 23
S_MAX_DD = 24
S_MAX_DD_BARS = 25
S_EXPOSED_BARS = 26
S_N_TRADES = 27
S_N_WINS = 28
S_N_LOSSES = 29
S_GROSS_PROFIT = 30
S_GROSS_LOSS = 31
S_PNL_MEAN = 32
S_PNL_M2 = 33
S_FEES = 34
S_FUNDING_TOTAL = 35
S_BARS_HELD = 36
S_LARGEST_WIN = 37
S_LARGEST_LOSS = 38
S_SKIPPED = 39
S_AMBIGUOUS = 40
S_N_LONG = 41
S_N_SHORT = 42
S_TRADE_ROWS = 43  # trades recorded (full mode)
S_STOP_ENTRY = 44  # the open trade's stop as set at its fill, before any trailing move; NaN = none
S_LIQ = 45  # the open position's liquidation price (see kernel.liquidation_price), set when cash changes
# several positions at once: the position's aggregates above (S_QTY total quantity, S_ENTRY_PX
# average entry price, S_MARGIN, S_ENTRY_FEE and S_FUNDING summed over legs, S_ENTRY_I the
# cycle's first fill) and one row per leg below
S_N_LEGS = 46  # legs open
S_CYCLE_EQ = 47  # equity at the start of the cycle (grid leg sizes)
S_FIRST_NOTIONAL = 48  # notional of the cycle's first leg (added legs' sizes)
S_LEVELS_DONE = 49  # bit k set: grid level k filled in this cycle
S_PTP_DONE = 50  # 1 once the cycle's partial target was taken
S_CYCLE_ID = 51  # cycles started (the current one's id)
S_CYCLE_PNL = 52  # PnL booked by the current cycle's trade rows
S_N_CYCLES = 53  # cycles ended
S_CYCLE_WINS = 54  # cycles ended with a positive PnL
S_STOP_ATR_DIST = 55  # the ATR part of the stop distance, fixed at the cycle's first fill
S_TP_ATR_DIST = 56  # the ATR part of the target distance
S_PTP = 57  # partial target level, NaN = none
S_PEND_REDUCE = 58  # next_open: 1 = a reduce pending
S_PTP_ATR_DIST = 59  # the ATR part of the partial target's distance
S_EXITS_ARMED = 60  # 1 once the position is armed (exit signals wait for it when P_ARM_R / P_ARM_BAND ask)
S_RISK_DIST = 61  # the first leg's stop distance from its fill (the R of P_ARM_R), 0 = no stop
S_STOP_LINE = 62  # the band stop's level, fixed at the cycle's first fill (NaN = none)
# portfolio gates (threadx.portfolio), set by the portfolio loop before each bar; a single
# backtest leaves them open (inf rooms, not blocked) and never counts a skip here
S_ROOM_GUARD = 63  # margin the account may hold once a new leg is added (global guard); inf = no limit
S_ROOM_CAP = 64  # the same under the runner's own cap
S_BLOCKED = 65  # 1 = no new leg (the portfolio's kill switch)
S_SKIP_GUARD = 66  # legs refused by the global margin guard
S_SKIP_CAP = 67  # legs refused by the runner's cap
S_SKIP_KILL = 68  # legs refused while the kill switch held entries
S_LEGS = 69  # leg rows start here, N_LEG_FIELDS each
LEG_QTY = 0
LEG_PX = 1
LEG_I = 2
LEG_FEE = 3  # entry fee still attributed to the open quantity
LEG_FUNDING = 4  # funding paid by the open quantity
LEG_MARGIN = 5
N_LEG_FIELDS = 6
MAX_LEGS = 8
N_STATE = S_LEGS + MAX_LEGS * N_LEG_FIELDS

# --- metrics vector ------------------------------------------------------------------
METRIC_NAMES = (
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "max_drawdown_bars",
    "calmar",
    "n_trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "avg_win",
    "avg_loss",
    "largest_win",
    "largest_loss",
    "avg_bars_held",
    "exposure",
    "total_fees",
    "total_funding",
    "sqn",
    "final_equity",
    "n_long",
    "n_short",
    "n_skipped",
    "n_ambiguous",
    "liquidated",
    "n_bars",
    "n_cycles",
    "cycle_win_rate",
)
# the columns of a sweep's result rows besides the params: a param may not take one of these names
RESULT_COLUMNS = frozenset({"combo_id", "status", "error", *METRIC_NAMES})

(
    M_TOTAL_RETURN,
    M_CAGR,
    M_VOLATILITY,
    M_SHARPE,
    M_SORTINO,
    M_MAX_DD,
    M_MAX_DD_BARS,
    M_CALMAR,
    M_N_TRADES,
    M_WIN_RATE,
    M_PROFIT_FACTOR,
    M_EXPECTANCY,
    M_AVG_WIN,
    M_AVG_LOSS,
    M_LARGEST_WIN,
    M_LARGEST_LOSS,
    M_AVG_BARS_HELD,
    M_EXPOSURE,
    M_TOTAL_FEES,
    M_TOTAL_FUNDING,
    M_SQN,
    M_FINAL_EQUITY,
    M_N_LONG,
    M_N_SHORT,
    M_N_SKIPPED,
    M_N_AMBIGUOUS,
    M_LIQUIDATED,
    M_N_BARS,
    M_N_CYCLES,  # positions opened and closed whole (a cycle: first fill to the exit of every leg)
    M_CYCLE_WIN_RATE,  # share of cycles whose legs' PnL sums to a gain
) = range(len(METRIC_NAMES))
N_METRICS = len(METRIC_NAMES)

# --- trade record columns ------------------------------------------------------------
TRADE_COLUMNS = (
    "entry_i",
    "exit_i",
    "side",
    "qty",
    "entry_price",
    "exit_price",
    "fees",
    "funding",
    "pnl",
    "return_pct",
    "bars_held",
    "exit_reason",
    "stop_at_entry",
    "stop_at_exit",
    "target",
    "target_at_exit",
    "cycle",
)
(
    T_ENTRY_I,
    T_EXIT_I,
    T_SIDE,
    T_QTY,
    T_ENTRY_PX,
    T_EXIT_PX,
    T_FEES,
    T_FUNDING,
    T_PNL,
    T_RETURN_PCT,
    T_BARS_HELD,
    T_REASON,
    T_STOP_ENTRY,  # the stop set at the fill (NaN = none)
    T_STOP_EXIT,  # the stop in force when the trade was last tested (after trailing moves)
    T_TARGET,  # the target in force from the fill (a mid-band target: the signal bar's mid)
    T_TARGET_EXIT,  # the target in force when the trade was last tested
    T_CYCLE,  # the cycle (position) the row belongs to, 1, 2, ...: one row per leg or partial close
) = range(len(TRADE_COLUMNS))
N_TRADE_COLS = len(TRADE_COLUMNS)
