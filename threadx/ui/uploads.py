"""Files uploaded in the browser, saved where an import reads them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from threadx.data.catalog import name_timeframe
from threadx.names import NAME, check_name


def save_uploads(uploads: Sequence[Any], scratch: str | Path) -> tuple[list[str], dict[str, str]]:
    """(paths, the name the user knows each by) of ``uploads`` (Streamlit's ``UploadedFile``:
    ``name`` and ``getvalue()``) written under ``scratch``, each in a folder of its own: two
    monthly files both named ``BTC_USDT-1h.csv`` were one copy, the first dropped and the
    second read twice. The browser's file name gives the format, a symbol guess and, as a
    typed path's name does, the timeframe the bars must have; a name that is not a plain file
    name (spaces, ...) leaves the copy a fixed one."""
    sources: list[str] = []
    shown: dict[str, str] = {}
    for upload in uploads:
        given = Path(upload.name).name
        suffix = "".join(Path(given).suffixes[-2:])
        plain_name = given if name_timeframe(given) and NAME.fullmatch(given) else f"upload{len(sources)}{suffix}"
        folder = Path(scratch) / str(len(sources))
        folder.mkdir()
        source = folder / check_name(plain_name, "upload file name")
        source.write_bytes(upload.getvalue())
        sources.append(str(source))
        shown[str(source)] = given
    return sources, shown
