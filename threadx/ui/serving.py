"""Who the workstation is serving: the address it listens on and the host a request names.

The workstation has no login. Listening on a loopback address keeps other machines out, but
not a web page in the user's own browser that re-points its host name at 127.0.0.1 (DNS
rebinding): the browser then treats the app as that page's own site, and Streamlit checks no
``Host`` header. So a request naming another host than a loopback one is refused while the
server listens on loopback (:func:`foreign_host`, app.py), and what runs code or reads the
server's files (the strategy editor, the import of a path on this machine) is offered only
when both the address and the request's host are local (:func:`local_only`).
"""
from __future__ import annotations

import ipaddress
import re

__all__ = ["is_loopback", "host_name", "request_host", "foreign_host", "refusal", "local_only"]


def is_loopback(address: str | None) -> bool:
    """True for a loopback ``server.address``: ``localhost`` or a loopback IP (127.0.0.0/8, ::1).
    Empty (Streamlit's unset option, which listens on every interface: a bare `streamlit run`
    outside the project folder, whose .streamlit/config.toml sets 127.0.0.1) is not.

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("0.0.0.0"), is_loopback("")
    (True, True, False, False)
    """
    text = (address or "").strip().strip("[]").lower()
    if text == "localhost" or text.endswith(".localhost"):  # (browsers resolve *.localhost to loopback themselves)
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port.

    >>> host_name("127.0.0.1:8501"), host_name("[::1]:8501"), host_name("Evil.example"), host_name("::1")
    ('127.0.0.1', '::1', 'evil.example', '::1')
    """
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text[1:]
    if text.count(":") == 1:  # name:port (a bare IPv6 address has several)
        return text.split(":")[0]
    return text


def request_host() -> str | None:
    """The host the browser's request named (None without a browser: AppTest, bare mode)."""
    import streamlit as st

    try:
        header = st.context.headers.get("Host")
    except Exception:  # noqa: BLE001 - no script run context
        return None
    return host_name(header) if header else None


def _address() -> str:
    import streamlit as st

    return str(st.get_option("server.address") or "")


def foreign_host() -> str | None:
    """The host a request names when the server listens on loopback and that host is not a
    loopback one (a DNS-rebinding page, or a proxy passing its public name on): such a request is
    refused. None when the request is local, or the user opted in to serving on a network."""
    host = request_host()
    if host is None or not is_loopback(_address()) or is_loopback(host):
        return None
    return host


def refusal() -> str:
    """What a request from a foreign host reads instead of the app."""
    import streamlit as st

    host = re.sub(r"[^a-z0-9.:\[\]-]", "?", foreign_host() or "")
    port = st.get_option("server.port")
    return (f"Refused: this request names the host `{host}`, but the workstation listens on `{_address()}` only "
            "and answers only to a local name (a web page can point its own name at this machine to reach it). "
            f"Open it as http://localhost:{port} or http://127.0.0.1:{port}; behind a proxy or a tunnel, have it "
            "send `Host: localhost`; to serve it on a network, see *Serving on a network* in the README.")


def local_only() -> tuple[bool, str]:
    """(whether the page may offer what runs code or reads the server's files, the server address
    it decided on): the server listens on loopback and the request names a loopback host."""
    import streamlit as st

    address = _address()
    if not address and not st.context.headers:  # no browser: a script run by AppTest, no server listening
        return True, address
    return is_loopback(address) and foreign_host() is None, address
