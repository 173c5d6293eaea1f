"""The UI-free helpers behind the dashboard: layer stacks, progress estimates, folder stamps, thumbnails."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tlcore.config import STRATEGIES
from tlcore.data import browse
from tlcore.data.images import InvalidImageError
from tlcore.insight import layer_stack
from tlcore.runs import monitor

# Layer stacks.


def test_vgg16_stack_groups_its_five_blocks_and_fine_tuning_trains_block5_and_the_head():
    stack = layer_stack.layer_stack("vgg16", 64, "all", head="flatten", dense_units=16)
    assert stack.phases == ("feature_extraction", "frozen_augmented", "fine_tuning")
    base = [block for block in stack.blocks if block.part == "base"]
    assert [block.name for block in base] == ["block1", "block2", "block3", "block4", "block5"]
    assert [block.layers for block in base] == [3, 3, 4, 4, 4]  # Convolutions and their pooling layer.
    # The whole schedule: the five steps left out feature extraction, which strategy "all" trains first.
    steps = layer_stack.FIVE_STEPS
    assert stack.steps == (*steps[:2], *layer_stack.SEQUENCE_STEPS, *steps[3:])
    assert "feature extraction" in stack.steps[2] and "augmented" in stack.steps[3]
    assert layer_stack.layer_stack("vgg16", 64, "fine_tuning", head="flatten", dense_units=16).steps == steps
    assert stack.unfrozen_layers == ("block5_conv1", "block5_conv2", "block5_conv3")
    states = {block.name: block.state("fine_tuning") for block in stack.blocks}
    assert states["block5"] == "trainable" and states["block4"] == "frozen"
    assert states["head: dense"] == "trainable" and states["head: flatten"] == "no weights"
    for phase in ("feature_extraction", "frozen_augmented"):
        assert all(block.state(phase) in ("frozen", "no weights") for block in base)
    # Flatten head at 64 px: a 2 x 2 x 512 feature map into 16 units, then one sigmoid unit.
    head = sum(block.parameters for block in stack.blocks if block.part == "head")
    assert head == (2 * 2 * 512 * 16 + 16) + (16 + 1)
    assert stack.counts("feature_extraction")["trainable"] == head
    assert stack.counts("fine_tuning")["trainable"] == head + 7_079_424  # block5: 3 x (3*3*512*512 + 512).
    assert stack.counts("fine_tuning")["total"] == 14_714_688 + head


def test_batch_normalization_keeps_a_fine_tuned_block_partly_frozen():
    stack = layer_stack.layer_stack("mobilenet_v2", 96, "fine_tuning", num_classes=3)
    states = {block.name: block.state("fine_tuning") for block in stack.blocks}
    assert states["block_16"] == "partly trainable" and states["block_15"] == "frozen"
    assert stack.blocks[-1].name == "head: output" and stack.blocks[-1].parameters == 256 * 3 + 3


def test_stacked_feature_levels_widen_the_head_and_say_so():
    plain = layer_stack.layer_stack("efficientnet_lite0", 96, "fine_tuning", dense_units=16)
    stacked = layer_stack.layer_stack("efficientnet_lite0", 96, "fine_tuning", dense_units=16, feature_levels=3)
    dense = [next(block for block in stack.blocks if block.name == "head: dense") for stack in (plain, stacked)]
    assert dense[0].parameters == 1280 * 16 + 16
    # Blocks 5 (112 channels) and 6 (192) stacked before the base's 1280.
    assert dense[1].parameters == (112 + 192 + 1280) * 16 + 16
    assert stacked.steps[0] == "Add a new classifier head on the outputs of the base's last 3 stages."
    assert stacked.steps[1:] == plain.steps[1:] and plain.steps == layer_stack.FIVE_STEPS
    # The stacking adds no weights to the base, and fine-tuning unfreezes the same layers.
    base_parameters = [
        sum(block.parameters for block in stack.blocks if block.part == "base") for stack in (plain, stacked)
    ]
    assert base_parameters[0] == base_parameters[1]
    assert stacked.unfrozen_layers == plain.unfrozen_layers
    # A backbone without registered stages falls back to its output, as TrainConfig.stacked_levels does.
    vgg = layer_stack.layer_stack("vgg16", 32, "feature_extraction", dense_units=16, feature_levels=3)
    assert vgg.steps[0] == layer_stack.FIVE_STEPS[0]


def test_scratch_stack_trains_every_layer_with_weights():
    stack = layer_stack.layer_stack("vgg16", 64, "scratch")
    assert stack.phases == ("scratch",)
    assert all(block.state("scratch") in ("trainable", "no weights") for block in stack.blocks)
    assert [block.name for block in stack.blocks if block.part == "base"][1:] == [
        "block1",
        "block2",
        "block3",
        "block4",
    ]


def test_inception_layers_join_the_mixed_module_they_feed():
    names = ["conv2d", "batch_normalization", "mixed0", "conv2d_1", "mixed1", "avg_pool"]
    assert layer_stack.group_layers(names) == ["mixed0", "mixed0", "mixed0", "mixed1", "mixed1", "top"]
    assert layer_stack.group_layers(["Conv1", "bn_Conv1", "block_1_expand", "block_1_add", "Conv_1", "out_relu"]) == [
        "stem",
        "stem",
        "block_1",
        "block_1",
        "top",
        "top",
    ]


def test_stack_chart_and_table_cover_every_block_and_phase():
    stack = layer_stack.layer_stack("vgg16", 32, "fine_tuning")
    spec = layer_stack.stack_chart(stack).to_dict()
    assert spec["height"] >= 24 * len(stack.blocks)
    # Column titles in short lines, so that the columns fit a phone's screen.
    label_expression = spec["layer"][0]["encoding"]["x"]["axis"]["labelExpr"]
    lines, rest = label_expression.split("[datum.label]")
    assert list(json.loads(lines).values()) == [["frozen +", "augmentation"], ["fine-tuning"]]
    assert rest == " || datum.label"
    # Vega would hide a title that touches its neighbour (the middle one, at 420 px).
    assert spec["layer"][0]["encoding"]["x"]["axis"]["labelOverlap"] is False
    assert spec["layer"][0]["encoding"]["color"]["legend"]["columns"] == 2
    table = stack.table()
    assert list(table.columns) == ["block", "layers", "parameters", "frozen + augmentation", "fine-tuning"]
    assert len(table) == len(stack.blocks)


def test_layer_stack_refuses_bad_arguments():
    with pytest.raises(ValueError, match="strategy"):
        layer_stack.layer_stack("vgg16", 64, "everything")
    with pytest.raises(ValueError, match="num_classes"):
        layer_stack.layer_stack("vgg16", 64, "all", num_classes=1)
    with pytest.raises(ValueError, match="feature_levels must be an integer >= 1, received 0"):
        layer_stack.layer_stack("efficientnet_lite0", 96, "all", feature_levels=0)


# Progress estimates.


def test_monitor_names_stages_from_the_strategies_table():
    for key, strategy in STRATEGIES.items():
        assert monitor.stage_name(key) == strategy.stage_name
    assert monitor.stage_name("unknown stage") == "unknown stage"


# End to end (augmented_views 0): a fine-tuning epoch costs about what a frozen one does.
CONFIG = {"strategy": "fine_tuning", "epochs": 10, "fine_tuning_epochs": 10, "augmented_views": 0}


def test_estimate_with_cached_views_says_what_it_caches_and_does_not_time_later_stages():
    config = dict(CONFIG, augmented_views=10)
    caching = {
        "stage": "frozen_augmented",
        "phase": "caching",
        "view": 3,
        "views": 10,
        "stage_elapsed": 20.0,
        "time": 1000.0,
    }
    estimate = monitor.estimate(config, {"state": "running"}, caching, [], now=1000.0)
    assert estimate.fraction == 0.0
    assert "caching augmented view 3 of 10" in estimate.text
    flipped = dict(caching, view=2, views=2, copy="flipped left-right")
    estimate = monitor.estimate(config, {"state": "running"}, flipped, [], now=1000.0)
    assert "caching the training images (copy 2 of 2, flipped left-right: flips are the only" in estimate.text
    unchanged = dict(caching, view=1, views=1, copy="as they are")
    estimate = monitor.estimate(config, {"state": "running"}, unchanged, [], now=1000.0)
    assert "caching the training images (the augmentation is off, so every view is the image as" in estimate.text
    progress = {
        "stage": "frozen_augmented",
        "epoch": 3,
        "epochs": 10,
        "batch": 5,
        "steps": 10,
        "stage_elapsed": 25.0,
        "time": 1000.0,
    }
    estimate = monitor.estimate(config, {"state": "running"}, progress, [], now=1000.0)
    assert estimate.seconds_left is None and "not timed yet" in estimate.text


def test_estimate_mid_epoch_counts_batches_and_times_the_later_stage():
    progress = {
        "stage": "frozen_augmented",
        "epoch": 3,
        "epochs": 10,
        "batch": 5,
        "steps": 10,
        "stage_elapsed": 25.0,
        "time": 1000.0,
    }
    estimate = monitor.estimate(CONFIG, {"state": "running"}, progress, [], now=1000.0)
    assert estimate.fraction == pytest.approx(2.5 / 20)
    # 10 s per epoch: 7.5 epochs left in this stage, 10 in fine-tuning.
    assert estimate.seconds_left == pytest.approx(175.0)
    assert estimate.text == (
        "Stage 1 of 2, frozen + augmentation: epoch 3 of 10, batch 5 of 10, about 2 min 55 s left."
    )


def test_estimate_subtracts_time_since_the_last_progress_record():
    progress = {
        "stage": "fine_tuning",
        "epoch": 10,
        "epochs": 10,
        "batch": None,
        "steps": None,
        "stage_elapsed": 50.0,
        "time": 1000.0,
    }
    estimate = monitor.estimate(CONFIG, {"state": "running"}, progress, [], now=1003.0)
    assert estimate.fraction == 1.0 and estimate.seconds_left == 0.0
    # Its model's saving still follows: "about 0 s left" stood through it, read as a stall.
    assert estimate.text.endswith("epoch 10 of 10 done, finishing the stage (validating and saving its model).")
    # Within the stage, the last seconds of an estimate are a few seconds.
    halfway = {**progress, "epoch": 10, "batch": 9, "steps": 10, "time": 1000.0}
    estimate = monitor.estimate(CONFIG, {"state": "running"}, halfway, [], now=1000.0)
    assert 0 < estimate.seconds_left < monitor.FEW_SECONDS and estimate.text.endswith(", a few seconds left.")
    # A stage's end with a timed stage after it says the time that stage will take, not "finishing".
    ended = {**progress, "stage": "frozen_augmented"}
    estimate = monitor.estimate(CONFIG, {"state": "running"}, ended, [], now=1000.0)
    assert estimate.seconds_left == pytest.approx(50.0) and estimate.text.endswith("done, about 50 s left.")


def test_a_resumed_run_is_not_timed_from_the_stopped_processs_last_record():
    # Right after a Resume it said "epoch 8 of 40 done, about 0 s left": the record's clock was the old process's,
    # and its epoch the one the stop cut short. It continues after the last whole epoch of the stage.
    config = {"strategy": "scratch", "epochs": 40}
    progress = {"stage": "scratch", "epoch": 8, "epochs": 40, "stage_elapsed": 40.0, "time": 1000.0}
    status = {"state": "running", "stage": "scratch", "started": 5000.0}
    records = [{"stage": "scratch", "stage_epoch": epoch, "epoch": epoch, "seconds": 5.0} for epoch in range(1, 8)]
    partial = {"stage": "scratch", "stage_epoch": 8, "epoch": 8, "partial": True}
    estimate = monitor.estimate(config, status, progress, [*records, partial], now=5010.0)
    assert estimate.seconds_left is None and estimate.fraction == 7 / 40
    assert estimate.text == "Scratch baseline: resuming after epoch 7 of 40 (preparing the model and the images)."
    estimate = monitor.estimate(config, status, progress, [], now=5010.0)  # Stopped in its first epoch.
    assert estimate.text == "Scratch baseline: starting it again (preparing the model and the images)."
    # Killed after frozen + augmentation's last epoch, resumed on fine-tuning: that stage, not the record's.
    sequence = {"strategy": "fine_tuning", "epochs": 10, "fine_tuning_epochs": 5}
    finished = {"stage": "frozen_augmented", "epoch": 10, "epochs": 10, "stage_elapsed": 40.0, "time": 1000.0}
    estimate = monitor.estimate(sequence, {**status, "stage": "fine_tuning"}, finished, [], now=5010.0)
    assert estimate.text == "Stage 2 of 2, fine-tuning: preparing the model and the images."
    assert estimate.fraction == 10 / 15
    # Once the new process records progress, it is timed again.
    estimate = monitor.estimate(config, status, {**progress, "epoch": 9, "time": 5020.0}, records, now=5021.0)
    assert estimate.seconds_left is not None and estimate.seconds_left > 0


def test_estimate_without_batches_yet_explains_what_happens():
    estimate = monitor.estimate(
        {"strategy": "all", "epochs": 5, "fine_tuning_epochs": 5},
        {"state": "running", "stage": "feature_extraction"},
        {},
        [],
    )
    assert estimate.fraction == 0.0 and estimate.seconds_left is None
    assert "extracting features" in estimate.text
    queued = monitor.estimate(CONFIG, {"state": "queued"}, {}, [])
    assert queued.fraction == 0.0 and queued.text.startswith("Queued")


def test_estimate_counts_the_images_feature_extraction_has_done():
    extracting = {
        "stage": "feature_extraction",
        "phase": "extracting",
        "split": "train",
        "images": 1216,
        "total": 2499,
        "time": 1000.0,
    }
    estimate = monitor.estimate(
        {"strategy": "all", "epochs": 5, "fine_tuning_epochs": 5},
        {"state": "running", "stage": "feature_extraction"},
        extracting,
        [],
        now=1000.0,
    )
    assert estimate.fraction == 0.0 and estimate.seconds_left is None
    assert estimate.text.startswith(
        "Stage 1 of 3, feature extraction: extracting features, 1,216 of 2,499 train images"
    )
    alone = monitor.estimate(
        {"strategy": "feature_extraction", "epochs": 5},
        {"state": "running"},
        dict(extracting, split="validation", images=0, total=500),
        [],
        now=1000.0,
    )
    assert alone.text.startswith("Feature extraction: extracting features, 0 of 500 validation images")
    # A damaged record says what happens without a count.
    damaged = monitor.estimate(
        {"strategy": "feature_extraction", "epochs": 5},
        {"state": "running"},
        dict(extracting, images="many", total=None),
        [],
        now=1000.0,
    )
    assert damaged.text == ("Feature extraction: extracting features (the frozen base reads every image once).")


def test_a_queued_run_names_the_run_it_waits_for_or_says_its_process_is_starting():
    waiting = monitor.estimate(CONFIG, {"state": "queued"}, {}, [], waiting_for="20260101-120000-all-vgg16-ab12")
    assert waiting.fraction == 0.0
    assert waiting.text == (
        "Queued: waiting for run 20260101-120000-all-vgg16-ab12 to finish (one training runs at a time)."
    )
    starting = monitor.estimate(CONFIG, {"state": "queued"}, {}, [])
    assert starting.text == "Queued: the training process is starting."


def test_feature_extraction_does_not_time_the_slower_stages_after_it():
    progress = {
        "stage": "feature_extraction",
        "epoch": 2,
        "epochs": 5,
        "batch": None,
        "steps": None,
        "stage_elapsed": 1.0,
        "time": 10.0,
    }
    estimate = monitor.estimate(
        {"strategy": "all", "epochs": 5, "fine_tuning_epochs": 5}, {"state": "running"}, progress, [], now=10.0
    )
    assert estimate.seconds_left is None and "not timed yet" in estimate.text
    assert estimate.fraction == pytest.approx(2 / 15)


def test_estimate_tolerates_damaged_records():
    assert monitor.estimate({}, {}, {}, []).fraction is None
    assert monitor.estimate({"strategy": "scratch"}, {"state": "running"}, {"stage": "other"}, []).fraction is None


def test_format_seconds():
    assert [monitor.format_seconds(value) for value in (4.4, 75, 3725)] == ["4 s", "1 min 15 s", "1 h 02 min"]


# Folder stamps and thumbnails.


def test_folder_stamp_changes_when_a_file_changes_and_refuses_huge_folders(tmp_path):
    (tmp_path / "cats").mkdir()
    photo = tmp_path / "cats" / "a.jpg"
    photo.write_bytes(b"one")
    first = browse.folder_stamp(tmp_path)
    assert browse.folder_stamp(tmp_path) == first
    photo.write_bytes(b"three")
    assert browse.folder_stamp(tmp_path) != first
    (tmp_path / "cats" / "b.jpg").write_bytes(b"x")
    with pytest.raises(browse.FolderTooLargeError, match="more than 1 files"):
        browse.folder_stamp(tmp_path, max_files=1)


def test_thumbnail_keeps_the_shape_applies_exif_and_refuses_junk():
    picture = Image.new("RGB", (400, 100), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # Rotated: shown 100 wide, 400 high.
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif)
    small, size = browse.thumbnail(buffer.getvalue(), 64)
    assert size == (100, 400) and small.shape == (64, 16, 3)
    square, _ = browse.thumbnail(buffer.getvalue(), 64, square=True)
    assert square.shape == (64, 64, 3) and tuple(square[0, 0]) == browse.PADDING
    with pytest.raises(InvalidImageError, match="empty"):
        browse.thumbnail(b"", 64, name="zero.jpg")


def test_human_size():
    assert [browse.human_size(value) for value in (812, 35_328, 2_202_010)] == ["812 B", "34.5 KB", "2.1 MB"]


def test_natural_order_counts_the_numbers_in_file_names():
    names = ["cat.100.jpg", "cat.10.jpg", "Cat.2.jpg", "cat.1.jpg", "cat.1000.jpg", "dog.3.jpg", "cat.a.jpg", "7.png"]
    ordered = browse.natural_order([f"/photos/cats/{name}" for name in names])
    assert [path.rsplit("/", 1)[1] for path in ordered] == [
        "7.png",
        "cat.1.jpg",
        "Cat.2.jpg",
        "cat.10.jpg",
        "cat.100.jpg",
        "cat.1000.jpg",
        "cat.a.jpg",
        "dog.3.jpg",
    ]
    assert browse.natural_order([]) == []


def test_markdown_shows_names_as_typed_in_text_and_tables():
    from views import markdown

    assert markdown.escape("**cats** :red[x]") == r"\*\*cats\*\* \:red\[x\]"
    assert markdown.table([{"class": "<b>dogs", "images": 3}, {"class": "cats", "images": None}]).splitlines() == [
        "| class | images |",
        "| --- | --- |",
        r"| \<b\>dogs | 3 |",
        "| cats |  |",
    ]
    with pytest.raises(ValueError, match="at least one row"):
        markdown.table([])


def test_a_file_name_in_a_narrow_caption_may_wrap_only_after_its_separators():
    # A 140 px mistake cell broke "validation/cats/cat.2034.jpg" wherever its line ran out, mid-word.
    from tests.app.page_kit import plain
    from views import markdown

    caption = markdown.file_name("validation/cats/cat_2034-b.jpg")
    assert caption.split("\u200b") == ["validation/", "cats/", "cat\\_", "2034\\-", "b\\.jpg"]
    assert plain(caption) == "validation/cats/cat_2034-b.jpg"
    # Nothing to break at the end, and a name without separators is only escaped.
    assert markdown.file_name("cats/") == "cats/" and markdown.file_name("*x*") == r"\*x\*"


def test_weights_phrase_is_one_wording_for_home_and_the_train_page():
    from tlcore.models.registry import WeightsStatus
    from views import markdown

    offline = WeightsStatus(True, "cache", "/k/models/w.h5", "")
    package = WeightsStatus(False, "bundled", "", "")
    download = WeightsStatus(False, "download", "/k/models/w.h5", "")
    for detailed in (True, False):
        assert markdown.weights_phrase(offline, [], detailed=detailed) == "available offline"
        assert markdown.weights_phrase(package, [], detailed=detailed) == "needs its weight package"
        assert markdown.weights_phrase(download, [], detailed=detailed) == "needs a download"
    pairs = [(0.25, 128), (0.25, 224)]
    assert markdown.weights_phrase(download, pairs, detailed=False) == "offline for some sizes"
    assert markdown.weights_phrase(download, pairs, detailed=True) == (
        "offline for alpha 0.25 at 128 px, alpha 0.25 at 224 px; others need a download"
    )


def test_the_server_keeps_runs_and_data_where_the_environment_says(monkeypatch, tmp_path):
    from views import server

    monkeypatch.setenv("TLCORE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TLCORE_DATA_DIR", str(tmp_path / "data"))
    assert (server.runs_dir(), server.data_dir()) == (tmp_path / "runs", tmp_path / "data")


def test_no_time_is_estimated_until_the_stages_first_epoch_has_ended():
    """Recorded progress of a run whose first batches compiled the step and filled the caches."""
    config = {"strategy": "feature_extraction", "epochs": 6}
    first_batches = {"stage": "feature_extraction", "epoch": 1, "epochs": 6, "batch": 6, "steps": 100}
    progress = {**first_batches, "stage_elapsed": 40.0, "time": 1040.0}
    estimate = monitor.estimate(config, {"state": "running"}, progress, [], now=1040.0)
    assert estimate.seconds_left is None, "40 s for 6 batches of 100 timed compilation, not the epochs"
    assert "known after this stage's first epoch" in estimate.text
    # Epoch 1 ended at 1045 s (45 s, compilation included); epoch 2's first half took 2.5 s.
    first = {"stage": "feature_extraction", "epoch": 1, "stage_epoch": 1, "seconds": 45.0, "time": 1045.0}
    halfway = {**first_batches, "epoch": 2, "batch": 50, "stage_elapsed": 47.5, "time": 1047.5}
    estimate = monitor.estimate(config, {"state": "running"}, halfway, [first], now=1047.5)
    assert estimate.seconds_left == pytest.approx(5.0 * 4.5), "5 s an epoch, 4.5 epochs to go"
    # Once two epochs are recorded, the epochs after the first time the rest.
    second = {**first, "epoch": 2, "stage_epoch": 2, "seconds": 6.0, "time": 1051.0}
    third = {**halfway, "epoch": 3, "batch": 50, "stage_elapsed": 54.0, "time": 1054.0}
    estimate = monitor.estimate(config, {"state": "running"}, third, [first, second], now=1054.0)
    assert estimate.seconds_left == pytest.approx(6.0 * 3.5)


def test_a_resumed_runs_time_left_leaves_out_the_new_processs_first_epoch():
    # The new process's first epoch compiles the step again: averaged in, a walker saw "about 1 min 17 s
    # left" three seconds before the end of a resumed run.
    config = {"strategy": "scratch", "epochs": 10}
    status = {"state": "running", "stage": "scratch", "started": 2000.0}
    earlier = [
        {
            "stage": "scratch",
            "epoch": epoch,
            "stage_epoch": epoch,
            "seconds": 45.0 if epoch == 1 else 5.0,
            "time": 1000.0 + 5 * epoch,
        }
        for epoch in range(1, 5)
    ]
    resumed = {"stage": "scratch", "epoch": 5, "stage_epoch": 5, "seconds": 60.0, "time": 2060.0}
    progress = {"stage": "scratch", "epoch": 6, "epochs": 10, "batch": 5, "steps": 10, "time": 2062.5}
    estimate = monitor.estimate(config, status, progress, [*earlier, resumed], now=2062.5)
    assert estimate.seconds_left == pytest.approx(5.0 * 4.5), "5 s an epoch, 4.5 epochs to go"
    # Stopped in its first epoch and resumed: only first epochs have ended, so the batches since the last time it.
    first = {**earlier[0], "time": 1045.0}
    resumed = {**resumed, "epoch": 2, "stage_epoch": 2}
    progress = {**progress, "epoch": 3, "batch": 5, "time": 2063.0}
    estimate = monitor.estimate(config, status, progress, [first, resumed], now=2063.0)
    assert estimate.seconds_left == pytest.approx(6.0 * 7.5), "3 s for half an epoch, 7.5 epochs to go"
    # Stopped after its first epoch, the new process in its own first: the time between the processes is no
    # epoch's (it said "about 420 h 12 min left").
    progress = {**progress, "epoch": 2, "batch": 5, "time": 2003.0}
    estimate = monitor.estimate(config, status, progress, [first], now=2003.0)
    assert estimate.seconds_left is None


def test_framed_puts_a_grey_frame_around_an_all_white_image():
    white = np.full((6, 5, 3), 255, dtype=np.uint8)
    result = browse.framed(white, thickness=2)
    assert result.shape == (10, 9, 3)
    assert (result[2:-2, 2:-2] == 255).all()
    border = np.concatenate([result[:2].reshape(-1, 3), result[-2:].reshape(-1, 3), result[:, :2].reshape(-1, 3)])
    assert (border == browse.FRAME).all()
    with pytest.raises(ValueError, match="shape"):
        browse.framed(white[..., 0])
    with pytest.raises(ValueError, match="thickness"):
        browse.framed(white, thickness=0)


def test_the_preview_key_of_a_data_set_whose_folder_name_is_not_utf8_is_made(tmp_path, catsdogs_subset):
    # The key hashed str(root).encode(): a folder name that is not UTF-8 (bytes on disk) broke the Data page.
    import os
    import shutil

    from tlcore.data import folders
    from views import session

    data = catsdogs_subset("utf8_or_not", train=2, validation=1)
    odd = tmp_path / os.fsdecode(b"photos-\xff\xfe")
    shutil.copytree(data, odd, symlinks=True)
    keys = {session.preview_image_key(folders.scan(path)) for path in (data, odd)}
    assert len(keys) == 2 and all(key.startswith("aug_image_") for key in keys)


def test_a_runs_headline_reads_as_a_sentence_whatever_its_status_holds():
    from views import run_view

    assert run_view.state_headline("done", None) == "Done: every stage finished"
    assert run_view.state_headline("failed", "ValueError: x") == "Failed: ValueError: x"
    assert run_view.state_headline("interrupted", None) == "Interrupted: no error was recorded"
    # A damaged status.json may hold any JSON value for the state.
    assert run_view.state_headline(None, None) == "None: no error was recorded"
    assert run_view.state_headline(3, "odd") == "3: odd"


def _page_progress_script() -> None:
    """An AppTest script: a display in a container, a task three quarters done, closed or not."""
    import streamlit as st

    from views import page_progress

    close = st.session_state.get("close", False)
    if close:
        with page_progress.shown_in(st.container()) as display:
            display.print("Converting the model")
            display.task("Checking the export", 4).advance(3)
        st.write("after")
    else:
        display = page_progress.PageDisplay(st.container())
        display.print("Converting the model")
        display.task("Checking the export", 4).advance(3)


def test_a_page_display_shows_the_latest_message_and_a_bar_until_its_step_ends():
    # An export showed only a spinner for the minute its TFLite conversion and check took.
    from streamlit.testing.v1 import AppTest

    from views import markdown

    at = AppTest.from_function(_page_progress_script).run()
    assert [caption.value for caption in at.caption] == ["Converting the model"]
    bars = at.get("progress")
    assert len(bars) == 1
    assert bars[0].proto.value == 75 and bars[0].proto.text == markdown.escape("Checking the export: 3 of 4")
    at.session_state["close"] = True
    at.run()
    assert not at.caption and not at.get("progress") and at.markdown[0].value == "after"


def _poll_find_script(job_id: str) -> None:
    """An AppTest script: the learning-rate finder's state line for one job."""
    from views import train_options

    train_options.poll_find(job_id)


def test_a_queued_find_names_the_run_it_waits_for_or_says_it_is_starting(folders, small_catsdogs):
    # "Waiting for its turn" showed while nothing trained, and "Starting" would have shown for minutes behind one.
    from streamlit.testing.v1 import AppTest

    from tests.app.page_kit import fake_running_run, plain
    from tlcore.config import TrainConfig
    from tlcore.runs import finder_jobs

    job = finder_jobs.create(TrainConfig(data_dir=str(small_catsdogs)), folders["runs"])
    at = AppTest.from_function(_poll_find_script, args=(job.id,)).run()
    assert [caption.value for caption in at.caption] == ["Starting (it waits while another find holds the CPU)..."]
    running = fake_running_run(folders["runs"], small_catsdogs)
    at.run()
    assert [plain(caption.value) for caption in at.caption] == [
        f"Waiting for run {running.id} to finish (one training at a time)..."
    ]
