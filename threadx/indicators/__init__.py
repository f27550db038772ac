"""Indicators: numba kernels, the registry of named indicators and the IndicatorBank cache."""
from threadx.indicators import kernels
from threadx.indicators.bank import IndicatorBank, default_bank
from threadx.indicators.registry import (
    INDICATORS,
    SOURCES,
    IndicatorDef,
    Intermediates,
    Param,
    canonical_params,
    compute,
    compute_many,
    compute_requests,
    get_indicator,
    list_indicators,
    normalize,
)

__all__ = [
    "INDICATORS",
    "SOURCES",
    "IndicatorBank",
    "IndicatorDef",
    "Intermediates",
    "Param",
    "canonical_params",
    "compute",
    "compute_many",
    "compute_requests",
    "default_bank",
    "get_indicator",
    "kernels",
    "list_indicators",
    "normalize",
]
