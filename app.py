"""Transfer Learning Studio: `streamlit run app.py`.

The navigation and the shared frame (what data set and run this session is working with);
each page is a script in app_pages/. (Not pages/: a folder of that name switches Streamlit back to
its legacy multipage mode whenever a server's first visitor opens a page other than the home page.)
"""

import streamlit as st

from app_pages import common

st.set_page_config(page_title="Transfer Learning Studio", page_icon=":material/model_training:", layout="wide")
common.prepare_server()

page = st.navigation([
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/data.py", title="Data", icon=":material/photo_library:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/predict.py", title="Predict", icon=":material/label:"),
])

try:
    page.run()
finally:  # Also after a page's st.stop(); drawn last, so it shows what the page just chose.
    with st.sidebar:
        dataset = common.current_dataset()
        st.caption("Data set: " + (common.dataset_line(dataset) if dataset else "none chosen yet"))
        run = common.current_run()
        st.caption("Run: " + (common.text(f"{run.id} ({run.state})") if run else "none running"))
