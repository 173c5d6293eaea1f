"""Transfer Learning Studio: `streamlit run app.py`.

The navigation and the shared frame (what data set and run this session is working with);
each page is a script in app_pages/. (Not pages/: a folder of that name switches Streamlit back to
its legacy multipage mode whenever a server's first visitor opens a page other than the home page.)
"""

import streamlit as st

from views import common

st.set_page_config(page_title="Transfer Learning Studio", page_icon=":material/model_training:", layout="wide")
common.prepare_server()

page = st.navigation(
    [
        st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/1_Data.py", title="Data", icon=":material/photo_library:"),
        st.Page("pages/2_Train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/3_Predict.py", title="Predict", icon=":material/label:"),
    ]
)


def draw_frame(dataset_line, run_line) -> None:
    """Writes the session's data set and run into the sidebar's two placeholders."""
    dataset = common.current_dataset()
    dataset_line.caption("Data set: " + (common.dataset_line(dataset) if dataset else "none chosen yet"))
    run = common.current_run()
    run_line.caption("Run: " + (common.text(f"{run.id} ({run.state})") if run else "none running"))


# Drawn before the page, and again after it to show what the page just chose. After a page's
# st.stop() Streamlit draws nothing more, so the first drawing is what stays on screen then.
frame = (st.sidebar.empty(), st.sidebar.empty())
draw_frame(*frame)
try:
    page.run()
finally:
    draw_frame(*frame)
