"""widgets.page_button: a button that opens another page without rebuilding its own first."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _two_pages() -> None:
    import streamlit as st

    from threadx.errors import ThreadXError
    from threadx.ui.widgets import go_to_requested_page, page_button

    def first() -> None:
        st.title("First")
        st.session_state["first_builds"] = st.session_state.get("first_builds", 0) + 1

        def prepare() -> None:
            if st.session_state.get("refuse"):
                raise ThreadXError("run x is gone")
            st.session_state["handed"] = "x"

        page_button(st, "Open second", "go", pages[1], prepare, failed="Cannot open run x")

    def second() -> None:
        st.title("Second")
        st.write(f"handed {st.session_state.get('handed')}")

    pages = [st.Page(first, title="First", default=True), st.Page(second, title="Second", url_path="second")]
    navigation = st.navigation(pages)
    go_to_requested_page()
    navigation.run()


def test_a_page_button_switches_before_its_page_is_built_again():
    """An ``if st.button(): st.switch_page()`` ran the whole page (the Research page's charts,
    2.2 s) once more before switching."""
    at = AppTest.from_function(_two_pages, default_timeout=30)
    at.run()
    assert at.title[0].value == "First" and at.session_state["first_builds"] == 1
    at.button(key="go").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Second" and at.markdown[0].value == "handed x"
    assert at.session_state["first_builds"] == 1  # the click's run built nothing of the first page


def test_a_page_button_whose_preparation_fails_says_why_and_stays():
    at = AppTest.from_function(_two_pages, default_timeout=30)
    at.run()
    at.session_state["refuse"] = True
    at.button(key="go").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "First"
    assert [e.value for e in at.error] == ["Cannot open run x: run x is gone"]
    at.run()  # said once: the next run shows the page as it was
    assert not at.error and at.title[0].value == "First"


def _job_page() -> None:
    from types import SimpleNamespace

    import streamlit as st

    from threadx.ui.widgets import job_progress

    job = SimpleNamespace(fraction=1.0, label="sweep of bb_atr", status_line="10,000 / 10,000 combos", job_id="j1",
                          is_active=st.session_state.setdefault("active", True),
                          stop_requested=st.session_state.setdefault("asked", False), state="completed")

    class Registry:
        def stop(self, job_id: str) -> None:
            st.session_state["stopped"] = job_id

    job_progress(Registry(), job, "t_stop", "Stopping…")


def test_a_stop_pressed_as_the_job_ends_is_answered():
    """The click's rerun found the job over: the Stop was dropped without a word."""
    at = AppTest.from_function(_job_page, default_timeout=30)
    at.run()
    at.button(key="t_stop").click().run()
    assert at.session_state["stopped"] == "j1" and [t.value for t in at.toast] == ["Stopping…"]
    at.session_state["active"] = False
    at.run()
    assert not at.toast and not at.button  # a rerun without the click: nothing said
    at.session_state["active"] = True
    at.run()
    at.session_state["active"] = False
    at.button(key="t_stop").click().run()  # pressed, and the job ended before the click's rerun
    assert [t.value for t in at.toast] == ["sweep of bb_atr had already ended (completed) when Stop arrived: "
                                           "nothing was stopped."]


def test_a_stop_asked_during_the_last_stage_of_a_completed_job_is_answered():
    """Stop pressed while a walk-forward ran its report: the job completed (3,000 / 3,000 combos)
    with no word that the stop came too late."""
    at = AppTest.from_function(_job_page, default_timeout=30)
    at.session_state["active"], at.session_state["asked"] = False, True
    at.run()
    assert [i.value for i in at.info] == ["Stop came too late to spare any work: what the job had under way when "
                                          "it was pressed finished, and the job completed; its whole result is "
                                          "shown."]
    at.session_state["asked"] = False
    at.run()
    assert not at.info
