"""Data layer: read, validate, resample, download and catalogue OHLCV candles and funding rates (SPEC section 1).

Importing this package is cheap: ccxt is imported only when a download needs it.
"""
from threadx.data.catalog import (
    DatasetExists,
    dataset_path,
    delete_dataset,
    list_datasets,
    parse_dataset_name,
    rename_dataset,
    resolve_dataset,
)
from threadx.data.fetch import FetchResult, fetch_ohlcv
from threadx.data.funding import FundingResult, fetch_funding, funding_for, read_funding_file
from threadx.data.io import check_ohlcv_file, import_ohlcv, load_ohlcv, read_ohlcv_file, write_ohlcv
from threadx.data.resample import resample_ohlcv
from threadx.data.synthetic import ensure_sample, generate_synthetic
from threadx.data.validate import ValidationReport, validate_ohlcv

__all__ = [
    "DatasetExists",
    "FetchResult",
    "FundingResult",
    "ValidationReport",
    "check_ohlcv_file",
    "dataset_path",
    "delete_dataset",
    "ensure_sample",
    "fetch_funding",
    "fetch_ohlcv",
    "funding_for",
    "generate_synthetic",
    "import_ohlcv",
    "list_datasets",
    "load_ohlcv",
    "parse_dataset_name",
    "read_funding_file",
    "read_ohlcv_file",
    "rename_dataset",
    "resample_ohlcv",
    "resolve_dataset",
    "validate_ohlcv",
    "write_ohlcv",
]
