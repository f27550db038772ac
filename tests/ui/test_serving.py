"""A request naming a foreign host (DNS rebinding) is refused; what runs code or reads the
server's files is offered only to local requests (threadx.ui.serving)."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from apptest_helpers import ROOT, open_page, texts


def _named_host(monkeypatch, host: str) -> None:
    """The browser's requests name ``host`` (AppTest sends no headers)."""
    from threadx.ui import serving

    monkeypatch.setattr(serving, "request_host", lambda: host)


def test_a_page_reached_under_a_foreign_host_name_is_refused_before_anything_runs(loopback_address, monkeypatch):
    """A web page that pointed its own name at 127.0.0.1 got the whole app, the strategy editor's
    Save included: the code it saved ran in the server."""
    _named_host(monkeypatch, "evil.example")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert "Refused: this request names the host `evil.example`" in texts(at.error)
    assert not at.title and not at.button and not at.text_area  # no page, no widget ran


def test_local_host_names_get_the_app(loopback_address, monkeypatch):
    for host in ("localhost", "127.0.0.1", "::1", "app.localhost"):
        _named_host(monkeypatch, host)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert at.title[0].value == "Backtest", host


def test_served_on_a_network_any_host_name_gets_the_app_but_no_path_import(network_address, monkeypatch):
    _named_host(monkeypatch, "workstation.lan")
    at = open_page("1_Data.py")
    assert not at.get("text_input") or not [t for t in at.text_input if t.key == "data_path"]
    assert "Importing a path on the server is off" in texts(at.caption)


def test_the_path_import_is_offered_on_loopback(loopback_address, monkeypatch):
    _named_host(monkeypatch, "localhost")
    at = open_page("1_Data.py")
    assert [t for t in at.text_input if t.key == "data_path"]


def test_host_names():
    from threadx.ui.serving import host_name, is_loopback

    assert [host_name(h) for h in ("LOCALHOST:8501", "[::1]:8501", "127.0.0.1", "evil.example:80")] == [
        "localhost", "::1", "127.0.0.1", "evil.example"]
    assert not is_loopback("localhost.evil.example") and not is_loopback("127.0.0.1.nip.io")
