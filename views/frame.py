"""The frame every page draws first: page settings, the server's preparation, the sidebar.

Each page script (app.py for Home, pages/*.py for the others) calls `draw()` as its first line:
with Streamlit's pages/ folder, a page runs on its own, without app.py around it.
"""

from __future__ import annotations

import streamlit as st

from tlcore.runs import catalog
from views import markdown, server, session

# (script, label, icon) of each page, in the sidebar's order. Streamlit's own list is hidden
# (client.showSidebarNavigation): it would label Home "app", after the entry script's file name.
PAGES = (
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Data.py", "Data", ":material/photo_library:"),
    ("pages/2_Train.py", "Train", ":material/model_training:"),
    ("pages/3_Predict.py", "Predict", ":material/label:"),
)

PAGE_STYLE = (
    # A Markdown table wider than a narrow window scrolls in its own box: as it was, the whole page scrolled
    # sideways (titles and all), and the table's right columns lay off screen.
    "[data-testid=stMarkdownContainer] table {display: block; max-width: 100%; overflow-x: auto} "
    # Narrower cells on a phone: a table of a few columns (Home's backbones) then fits whole.
    "@media (max-width: 640px) {[data-testid=stMarkdownContainer] :is(td, th) {padding: 0.4rem 0.45rem}} "
    # The sidebar's script (below) draws nothing, but its empty element added a gap under the links.
    "[data-testid=stSidebar] [data-testid=stElementContainer]:has(> [data-testid=stHtml] > script) {display: none}"
)

# Streamlit folds the sidebar away after a tap on its own page list on a phone, but not after one on the
# st.page_link links this frame draws: the page changed behind a sidebar that stayed open over it. This folds
# it by clicking the sidebar's own collapse button, on any window narrower than Streamlit's "md" breakpoint
# (768 px), where the open sidebar lies over the page instead of beside it. One listener per browser tab (the
# script runs again at every page change).
FOLD_SIDEBAR_ON_NARROW_WINDOWS = """<script>
if (!window.tlsFoldsSidebarAfterLinks) {
  window.tlsFoldsSidebarAfterLinks = true;
  document.addEventListener("click", (event) => {
    const link = event.target.closest("[data-testid=stSidebar] [data-testid=stPageLink-NavLink]");
    if (!link || window.innerWidth >= 768) return;
    const collapse = document.querySelector("[data-testid=stSidebarCollapseButton] button");
    if (collapse) collapse.click();
  });
}
</script>"""


class SessionLines:
    """The sidebar's two lines: the session's data set and its run."""

    def __init__(self) -> None:
        self.dataset_line = st.sidebar.empty()
        self.run_line = st.sidebar.empty()

    def draw(self) -> None:
        """Writes (again) what the session's data set and run are now."""
        dataset = session.current_dataset()
        self.dataset_line.caption(
            "Data set: "
            + (markdown.dataset_line(dataset, session.dataset_name(dataset.root)) if dataset else "none chosen yet")
        )
        run = session.current_run()
        if run is None:
            self.run_line.caption("Current run: none yet")
            return
        name = catalog.label(run)  # The name a person gave it, as the Train page and Predict show it.
        named = f" “{name}”" if name else ""
        # "Current run", as the Train page heads it: on Predict, "Run:" read as the run predicting there.
        self.run_line.caption("Current run: " + markdown.escape(f"{run.id}{named} ({run.state})"))


def draw() -> SessionLines:
    """Sets up the page and draws the sidebar: the links to every page, then the session's lines.

    Returns:
        The session's lines, for a page to draw again right after it changes the data set (a
        st.stop() further down would end the script before anything drawn at its bottom).
    """
    st.set_page_config(page_title="Transfer Learning Studio", page_icon=":material/model_training:", layout="wide")
    st.html(f"<style>{PAGE_STYLE}</style>")
    server.prepare()
    for script, label, icon in PAGES:
        st.sidebar.page_link(script, label=label, icon=icon)
    st.sidebar.html(FOLD_SIDEBAR_ON_NARROW_WINDOWS, unsafe_allow_javascript=True)
    session.reopen_dataset()
    session.reopen_settings()
    session.remember_settings()
    lines = SessionLines()
    lines.draw()
    return lines
