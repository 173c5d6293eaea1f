"""Data: choose a data set, read its scan report, browse its images, preview the augmentation."""

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import streamlit as st

from tlcore import wording
from tlcore.data import browse, library, roots, zips
from tlcore.data.dataset import DatasetError
from tlcore.data.images import InvalidImageError
from tlcore.files import printable
from tlcore.insight import charts
from views import (
    augment_view,
    builder_view,
    cached,
    explore_view,
    frame,
    gallery,
    library_view,
    markdown,
    server,
    session,
)

session_lines = frame.draw()


PER_PAGE = 12

st.title("Data")
st.caption(
    "A data set is a folder with one subfolder of photos per class (or train/ and validation/ "
    "folders of class subfolders). Class names come from the folder names."
)

source = st.segmented_control(
    "Where are the photos?",
    ["Folder", "Zip upload", "Demo set", "Build", "Library"],
    default="Folder",
    required=True,
    key="data_source",
    persist_state="session",
)
# Drawn here, filled once the source has said which split a picked data set was scanned with.
split_area = st.expander("Validation split (for a data set without a validation folder)")
folder, kind = None, "folder"  # The folder to scan, and how it came (for the library).
extracted_now = None  # The name of the archive extracted on this run into `folder`, if one was.
split = None  # (fraction, seed) a data set from the library was scanned with.
if source == "Folder":
    with st.form("folder_form", border=False):
        typed = st.text_input(
            "Folder path",
            key="folder_path",
            persist_state="session",
            placeholder="/path/to/photos (class folders, or train/ and validation/)",
        )
        if st.form_submit_button("Scan folder", type="primary"):
            if not typed.strip():
                st.warning("Type the path of a folder first.")
            else:
                try:  # Only folders under the allowed data roots are listed and decoded.
                    folder = str(roots.resolve_under_roots(typed.strip()))
                except ValueError as error:  # Outside the roots, or a path the system cannot hold (a NUL).
                    st.error(markdown.escape(error))
elif source == "Zip upload":
    archive = st.file_uploader("A zip archive of class folders", type=["zip"], key="zip_upload")
    if archive is not None and st.button("Extract and scan", type="primary"):
        content = archive.getvalue()
        # Named by its content: the same archive uploaded again (this session or another) is the data set
        # extracted before, not one more copy and library entry.
        digest = hashlib.sha256(content).hexdigest()[:12]
        destination = server.data_dir() / "uploads" / f"{Path(archive.name).stem[:40]}-{digest}"
        if destination.is_dir():
            folder, kind = str(destination), "upload"
        else:
            try:
                with st.spinner("Extracting..."):
                    report = zips.extract_dataset(content, destination, name=archive.name)
            except (zips.UnsafeArchiveError, ValueError, OSError) as error:
                st.error(markdown.escape(error))
            else:
                folder, kind, extracted_now = str(report.destination), "upload", archive.name
        skipped_files = zips.skipped_files(destination) if folder is not None else ()
        if skipped_files:  # Said again when the same archive comes back and its folder is reused.
            skipped = wording.count(len(skipped_files), "file")
            with st.expander(f"{skipped} in the archive not extracted"):
                st.dataframe(pd.DataFrame(skipped_files, columns=["file", "reason"]), hide_index=True)
elif source == "Demo set":
    st.caption(
        "The offline set needs no network: patches of three textures photographed in scikit-image. "
        "Cats vs dogs (the TensorFlow tutorial's 3,000 photos) is downloaded once, about 65 MB."
    )
    offline, online = st.columns(2)
    if offline.button("Offline demo: brick, grass, gravel", type="primary"):
        from tlcore.data import demo

        try:
            with st.spinner("Building the offline demo set..."):
                folder, kind = str(demo.build_offline_demo(server.data_dir() / "demo" / "textures")), "demo"
        except (ValueError, OSError) as error:
            st.error(markdown.escape(error))
    if online.button("Download cats vs dogs"):
        from tlcore.data import demo

        try:
            with st.spinner("Downloading cats vs dogs..."):
                folder, kind = str(demo.download_cats_and_dogs()), "demo"
        except demo.DemoDataError as error:
            if error.reason is None:  # A damaged download: its message says what happened and what to do.
                st.error(markdown.escape(error))
            else:  # Said for this page: the Python function the message names is no help here.
                what_now = "Try again later. " if error.answered else "It needs network access. "
                st.error(
                    markdown.escape(f"Could not download cats vs dogs: {error.reason}. {what_now}")
                    + "The offline demo needs no download: **Offline demo: brick, grass, gravel**."
                )
        except OSError as error:
            st.error(markdown.escape(error))
elif source == "Build":
    made = builder_view.build()
    if made is not None:
        folder, kind = made, "built"
elif source == "Library":
    picked = library_view.choose()
    if picked is not None:
        folder, kind, split = picked.path, picked.kind, (picked.validation_fraction, picked.seed)

# Defaults through the state, not the widgets: a widget given both a value and state logs a warning.
# The data set's own split first: one the frame reopened on another page was scanned with it.
current = session.current_dataset()
if source == "Build" and current is not None and (scanned := builder_view.refreshed(current)) is not current:
    current = scanned  # Photos added to the set in use count at once, here and in the sidebar.
    session_lines.draw()
st.session_state.setdefault("split_fraction", current.validation_fraction if current else 0.2)
st.session_state.setdefault("split_seed", current.seed if current else 1337)
if split is not None:  # The widgets below show the split the picked data set is scanned with.
    st.session_state["split_fraction"], st.session_state["split_seed"] = split
with split_area:
    left, right = st.columns(2)
    fraction = round(
        left.slider(
            "Validation fraction",
            0.05,
            0.5,
            step=0.05,
            key="split_fraction",
            persist_state="session",
            help="Share of each class held out for validation when the data set has no validation/ folder.",
        ),
        2,
    )  # Slider steps add float noise (0.15000000000000002).
    seed = int(
        right.number_input(
            "Split seed",
            0,
            2**31 - 1,
            key="split_seed",
            persist_state="session",
            help="The same seed gives the same split; training uses the data set's split as scanned here.",
        )
    )
if folder is None and current is not None and current.layout == "flat":
    if (round(current.validation_fraction, 4), current.seed) != (round(fraction, 4), seed):
        folder = current.root  # A new split of the data set shown: scanned again (cached per split).

if folder is not None:
    try:
        with st.spinner("Scanning: every image is decoded once to find damaged files..."):
            scanned = cached.scan_folder(folder, fraction, seed)
        session.use_dataset(scanned)
    except (DatasetError, ValueError, OSError) as error:
        if extracted_now is None:
            st.error(markdown.escape(error))
        else:
            # Not a data set: its extracted copy goes (the library never listed it, so nothing could delete it),
            # and the message names the archive, not the app's folder.
            shutil.rmtree(folder, ignore_errors=True)
            st.error(markdown.escape(str(error).replace(folder, extracted_now)))
    else:
        session_lines.draw()  # The sidebar names the new data set at once.
        try:
            st.query_params["dataset"] = library.record(server.data_dir(), scanned, kind).id
        except OSError as error:  # The data set is usable; only the library could not note it.
            st.warning(markdown.escape(f"Not added to the library: {error}"))

dataset = session.current_dataset()
if dataset is None:
    st.info("No data set yet: scan a folder, upload a zip, build the offline demo set, or make one under Build.")
    st.stop()

st.divider()  # What follows is the data set in use, which may not be the one a source above is showing.
st.header("Scan report")
dataset_title = session.dataset_name(dataset.root)
if source == "Build" and builder_view.making_another(dataset.root):
    st.caption(
        markdown.escape(
            f"The data set in use is {dataset_title}; the set being made above takes its place once you press "
            "“Use this data set”."
        )
    )
st.markdown(f"**{markdown.escape(dataset_title)}** · {markdown.escape(dataset.root)}")
counts = dataset.counts()
gallery.metrics(
    [("Classes", dataset.num_classes)]
    + [(f"{split.capitalize()} images", sum(per_class.values())) for split, per_class in counts.items()]
    + [("Left out", len(dataset.rejected))]
)
if dataset.layout == "flat":
    st.caption(
        f"No validation folder: {dataset.validation_fraction:.0%} of each class is held out for "
        f"validation (seed {dataset.seed})."
    )
chart, table = st.columns(2)
chart.altair_chart(charts.split_counts(counts), width="stretch")
# The class column is as wide as its longest name (the grid's default cut "dandelion" to "dandeli").
table.dataframe(
    pd.DataFrame(counts).rename_axis("class"),
    column_config={"_index": st.column_config.TextColumn("class", width=markdown.text_width(dataset.classes))},
)
if dataset.rejected:
    st.warning(f"{wording.count(len(dataset.rejected), 'file')} left out; training uses the others.")
    st.dataframe(
        # Files from a zip upload are named as they are in the archive, not by their generated names.
        pd.DataFrame(
            [
                {
                    "file": item.original
                    or printable(
                        str(Path(item.path).relative_to(dataset.root))
                        if item.path.startswith(dataset.root)
                        else item.path
                    ),
                    "reason": item.reason,
                }
                for item in dataset.rejected
            ]
        ),
        hide_index=True,
    )

st.header("Browse")
split_column, class_column = st.columns(2)
split = split_column.segmented_control(
    "Split", list(dataset.splits), default="train", required=True, key="browse_split"
)
class_name = class_column.selectbox("Class", dataset.classes, key="browse_class")
label = dataset.classes.index(class_name)
paths = browse.natural_order([sample.path for sample in dataset.splits[split] if sample.label == label])
pages = max(1, -(-len(paths) // PER_PAGE))
page = st.pagination(pages, key=f"browse_page_{split}_{label}") if pages > 1 else 1
st.caption(f"{len(paths)} images, page {page} of {pages}")
shown = paths[(page - 1) * PER_PAGE : page * PER_PAGE]
for cell, path in zip(gallery.cells(len(shown)), shown):
    with cell:
        try:
            picture, (width, height) = cached.thumbnail(path)
        except (InvalidImageError, OSError) as error:
            st.error(markdown.escape(f"{Path(path).name}: {getattr(error, 'reason', error)}"))
            continue
        size = browse.human_size(Path(path).stat().st_size)
        # Captions are Markdown: a file name is escaped so it shows as named (never a link or formatting).
        st.image(
            picture, caption=markdown.file_name(Path(path).name) + markdown.escape(f" · {size} · {width}×{height}")
        )

st.header("Augmentation preview")
st.caption(
    "Training on augmented images (strategies 2 and 3, and scratch) shows the network a randomly "
    "changed copy of each photo every epoch. These copies come from the very Keras layers "
    "training uses; the settings chosen here are the ones the Train page uses."
)

augment_view.preview(dataset)

st.header("Explore")
explore_view.explorer(dataset)
