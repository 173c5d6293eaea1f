"""Transfer Learning Studio: `streamlit run app.py`.

Home: what the app does, the current data set, the latest runs, the backbones and their weights.
The other pages are the scripts in pages/ (Streamlit's pages folder); each draws views.frame first.
"""

import streamlit as st

from tlcore import wording
from tlcore.models.registry import BACKBONES
from tlcore.runs import catalog, store
from views import cached, frame, markdown, server, session

frame.draw()


def weights_cell(key: str, default_size: int) -> str:
    """Whether the backbone's weights are offline; for a MobileNet, which of its weight files are."""
    return markdown.weights_phrase(
        cached.weights_status(key, default_size), cached.offline_variants(key), detailed=True
    )


st.title("Transfer Learning Studio")
st.markdown(
    "Teach a pretrained image network your own classes: choose a folder of photos sorted into one "
    "folder per class, and the studio trains a classifier on top of a network that already knows "
    "ImageNet. It shows, live, what each transfer-learning strategy freezes and trains, and how "
    "well the result recognises photos it has never seen."
)

st.subheader("Where to start")
st.markdown(
    "1. **Data**: pick a folder, upload a zip of class folders, or build the offline demo set; "
    "check the scan report and the augmentation preview.\n"
    "2. **Train**: start with *feature extraction* (it takes seconds), then compare the other strategies.\n"
    "3. **Predict**: upload photos and see what a finished run thinks they are."
)
left, middle, right = st.columns(3)
left.page_link("pages/1_Data.py", label="Choose a data set", icon=":material/photo_library:")
middle.page_link("pages/2_Train.py", label="Train a model", icon=":material/model_training:")
right.page_link("pages/3_Predict.py", label="Predict photos", icon=":material/label:")

st.subheader("Current data set")
dataset = session.current_dataset()
if dataset is None:
    st.info("No data set chosen yet in this session: start on the Data page.")
else:
    st.markdown(markdown.dataset_line(dataset, session.dataset_name(dataset.root)))

st.subheader("Latest runs")
latest = [catalog.describe(run) for run in store.list_runs(server.runs_dir())[:5]]
if not latest:
    st.info("No runs yet: train one on the Train page.")
else:
    st.markdown(
        markdown.table(
            [
                {
                    # The name a person gave the run, beside the id the CLI takes.
                    "run": row["run"] if not row["label"] else f"{row['run']} ({row['label']})",
                    # The state and the saved model's accuracy (what Predict and the exports use; an earlier
                    # stage's peak beside it) next to the run, so a narrow screen sees them without scrolling.
                    "state": row["state"],
                    "val. accuracy": catalog.percent(row["accuracy"]),
                    "best stage": catalog.best_stage_text(row),
                    "strategy": catalog.strategy_title(row["strategy"]),
                    "model": row["model"],
                    "size (px)": row["image_size"],
                    "epochs": row["epochs"],
                }
                for row in latest
            ]
        )
    )

st.subheader("Backbones")
st.caption(
    "Pretrained bases to build on. ImageNet weights are either on this machine already or need a "
    "one-time download; without a network, train with random weights or pick one marked offline."
)
rows = []
for key, backbone in BACKBONES.items():
    rows.append(
        {
            "backbone": backbone.display_name,
            "weights": weights_cell(key, backbone.default_size),
            # The size a new run starts at: the default preset trains EfficientNet-Lite0 below its native size.
            "default size (px)": backbone.default_size
            if wording.preset_size(key) in (None, backbone.default_size)
            else f"{wording.preset_size(key)} (native {backbone.default_size})",
            "about": backbone.description,
        }
    )
# Offline first, then the MobileNets offline at some sizes; stable otherwise.
rows.sort(key=lambda row: (row["weights"] != "available offline", not row["weights"].startswith("offline")))
st.markdown(markdown.table(rows))
