"""`python -m tlcore ...` run as a person or a script would run it, and the flags generated from TrainConfig."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

import tlcore
from tests.helpers.paths import PROJECT_ROOT
from tlcore import cli, cli_flags, files, wording
from tlcore.config import AugmentationConfig, TrainConfig, from_preset
from tlcore.settings import setting, settings_of


def _tlcore(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tlcore", *arguments], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


def _json(result: subprocess.CompletedProcess) -> dict:
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output; stderr: {result.stderr}"
    return json.loads(lines[-1])


def test_scan_json_of_the_real_data_set(catsdogs_dir):
    result = _tlcore("scan", str(catsdogs_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = _json(result)
    assert report["root"] == str(catsdogs_dir.resolve())
    assert report["layout"] == "splits"
    assert report["classes"] == ["cats", "dogs"]
    assert report["splits"] == {"train": {"cats": 1000, "dogs": 999}, "validation": {"cats": 250, "dogs": 250}}
    assert report["rejected"] == []


def test_scan_json_reports_exactly_the_bad_files(seeded_bad_catsdogs):
    root, expected = seeded_bad_catsdogs
    result = _tlcore("scan", str(root), "--json")
    assert result.returncode == 0, result.stderr
    report = _json(result)
    assert report["splits"] == {"train": {"cats": 12, "dogs": 12}, "validation": {"cats": 6, "dogs": 6}}
    rejected = {item["path"]: item["reason"] for item in report["rejected"]}
    assert set(rejected) == set(expected)
    for path, word in expected.items():
        assert word in rejected[path].lower(), (path, rejected[path])


def test_scan_text_report_lists_counts_and_rejected_files(seeded_bad_catsdogs):
    root, expected = seeded_bad_catsdogs
    result = _tlcore("scan", str(root))
    assert result.returncode == 0, result.stderr
    assert "Classes (2): cats, dogs" in result.stdout
    assert "train: 24 images" in result.stdout and "validation: 12 images" in result.stdout
    assert "Rejected (3):" in result.stdout
    for path in expected:
        assert path in result.stdout


def test_scan_warns_of_a_damaged_exif_in_one_line_naming_the_photo(tmp_path):
    """Pillow's warning names no file and Python's format adds a source line: the CLI says which photo."""
    exif = Image.Exif()
    exif[0x010E] = "a description longer than what is left of the data " * 2
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for class_name in ("cats", "dogs"):
        (tmp_path / class_name).mkdir()
        for index in range(4):
            damaged = class_name == "dogs" and index == 0
            exif_bytes = exif.tobytes()[:-60] if damaged else b""
            Image.fromarray(pixels).save(tmp_path / class_name / f"{index}.jpg", exif=exif_bytes)

    result = _tlcore("scan", str(tmp_path))

    assert result.returncode == 0, result.stderr
    damaged_path = tmp_path / "dogs" / "0.jpg"
    assert f"warning: {damaged_path}: Tag data larger than file. Skipping tag 270\n" in result.stderr
    assert "warnings.warn" not in result.stderr and "UserWarning" not in result.stderr
    assert "Rejected: none" in result.stdout


def test_scan_flat_layout_honours_fraction_and_seed(flat_small):
    first = _json(_tlcore("scan", str(flat_small), "--json", "--validation-fraction", "0.3", "--seed", "4"))
    assert first["layout"] == "flat"
    assert first["classes"] == ["cats", "dogs", "greys"]
    assert first["splits"]["validation"] == {"cats": 3, "dogs": 3, "greys": 3}
    assert first["splits"]["train"] == {"cats": 7, "dogs": 7, "greys": 7}
    # The counts depend on the fraction alone; which photos are held out depends on the seed.
    again = _json(_tlcore("scan", str(flat_small), "--json", "--validation-fraction", "0.3", "--seed", "4"))
    other = _json(_tlcore("scan", str(flat_small), "--json", "--validation-fraction", "0.3", "--seed", "5"))
    assert first["seed"] == 4 and other["seed"] == 5
    assert again["files"]["validation"] == first["files"]["validation"]
    assert other["files"]["validation"] != first["files"]["validation"]


def test_help_explains_the_commands():
    result = _tlcore("--help")
    assert result.returncode == 0
    assert "scan" in result.stdout
    result = _tlcore("scan", "--help")
    assert result.returncode == 0
    for words in ("train/<class>/", "validation/<class>/", "--json", "--validation-fraction", "--seed"):
        assert words in result.stdout, words


def test_missing_folder_fails_with_a_message_not_a_traceback(tmp_path):
    missing = tmp_path / "no such data"
    result = _tlcore("scan", str(missing))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert str(missing) in result.stderr and "does not exist" in result.stderr

    result = _tlcore("scan", str(missing), "--json")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "does not exist" in _json(result)["error"]


def test_unusable_data_set_fails_with_a_message(tmp_path, small_catsdogs):
    # Only a train folder: a data set error, reported as such.
    shutil.copytree(small_catsdogs / "train", tmp_path / "set" / "train")
    result = _tlcore("scan", str(tmp_path / "set"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "no validation folder" in result.stderr


def test_bad_validation_fraction_fails_with_a_message(flat_small):
    result = _tlcore("scan", str(flat_small), "--validation-fraction", "1.5")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "1.5" in result.stderr


# Flags the train command had before they were generated: scripts still pass them.
FLAGS_BEFORE = (
    "--data --strategy --backbone --preset --weights --alpha --image-size --epochs --fine-tuning-epochs --batch-size "
    "--learning-rate --fine-tuning-learning-rate --optimizer --head --dense-units --dropout --validation-fraction "
    "--seed --augmented-views --end-to-end --early-stopping --class-weight --rotation --width-shift --height-shift "
    "--zoom --horizontal-flip --no-horizontal-flip --vertical-flip --no-vertical-flip --brightness --contrast "
    "--distribution --cpu-replicas --replica-scaling --precision --xla --no-xla --runs-dir --json"
).split()


def _command(name: str) -> argparse.ArgumentParser:
    commands = next(action for action in cli.build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices[name]


def _setting_flags(parser: argparse.ArgumentParser) -> dict[str, list[argparse.Action]]:
    """dest -> the flags that set it, leaving out shorthands with a fixed value (--end-to-end)."""
    flags: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._StoreConstAction):
            flags.setdefault(action.dest, []).append(action)
    return flags


def _train_settings() -> dict[str, object]:
    """dest -> the field behind it, for TrainConfig's settings and AugmentationConfig's."""
    fields = {item.name: item for item in settings_of(TrainConfig)}
    fields.update({f"augmentation_{item.name}": item for item in settings_of(AugmentationConfig)})
    return fields


def test_every_setting_has_exactly_one_train_flag():
    flags = _setting_flags(_command("train"))
    for dest, item in _train_settings().items():
        assert len(flags.get(dest, [])) == 1, dest
        assert flags[dest][0].option_strings[0] == cli_flags.flag_name(item), dest
    given = {option for action in _command("train")._actions for option in action.option_strings}
    assert set(FLAGS_BEFORE) <= given


def test_lr_find_flags_are_the_train_flags_it_needs():
    train, finder = _setting_flags(_command("train")), _setting_flags(_command("lr-find"))
    settings = set(finder) & set(_train_settings())
    assert settings == set(cli.LR_FIND_SETTINGS)
    for dest in settings:
        made, reference = finder[dest][0], train[dest][0]
        assert (made.option_strings, made.type, made.choices, made.help) == (
            reference.option_strings,
            reference.type,
            reference.choices,
            reference.help.removesuffix(" (required unless --resume is given)"),  # train's --data only.
        )


def test_every_help_text_shows_the_real_default():
    flags = _setting_flags(_command("train"))
    for dest, item in _train_settings().items():
        if item.default is not None and dest != "data_dir":
            assert f"(default {wording.setting_value(item.default)}" in flags[dest][0].help, dest
    assert flags["epochs"][0].help.endswith("(default 30)")
    assert flags["learning_rate"][0].help.endswith("(default 0.001; seed preset: 2e-05)")
    assert flags["jit_compile"][0].help.endswith("(default off)")
    assert flags["augmentation_rotation_degrees"][0].help.endswith("(default 10; quality preset: 0)")
    assert flags["augmentation_horizontal_flip"][0].help.endswith("(default on)")
    # Not required by the parser, since --resume RUN needs none; command_train asks for it otherwise.
    assert flags["data_dir"][0].help.endswith("(required unless --resume is given)")


def test_presets_fill_in_and_explicit_flags_win():
    arguments = cli.build_parser().parse_args(
        ["train", "--data", "photos", "--preset", "seed", "--batch-size", "8", "--zoom", "0.5", "--no-vertical-flip"]
    )
    config = from_preset(arguments.preset, **cli_flags.settings_from(arguments))
    assert (config.backbone, config.image_size, config.batch_size, config.epochs) == ("vgg16", 150, 8, 30)
    assert config.augmentation == AugmentationConfig(zoom=0.5, vertical_flip=False)
    arguments = cli.build_parser().parse_args(["train", "--data", "photos", "--preset", "quality"])
    config = from_preset(arguments.preset, **cli_flags.settings_from(arguments))
    assert (config.backbone, config.image_size, config.head) == ("efficientnet_lite1", 240, "global_average")
    flips_only = AugmentationConfig(rotation_degrees=0, width_shift=0, height_shift=0, zoom=0)
    assert config.augmentation == flips_only
    # One augmentation flag changes one setting: the preset's others stay.
    arguments = cli.build_parser().parse_args(
        ["train", "--data", "photos", "--preset", "quality", "--vertical-flip", "--zoom", "0.2"]
    )
    config = from_preset(arguments.preset, **cli_flags.settings_from(arguments))
    assert config.augmentation == dataclasses.replace(flips_only, vertical_flip=True, zoom=0.2)
    # A whole AugmentationConfig (the Train page's, from the Data page) replaces the preset's.
    assert from_preset("quality", data_dir="photos", augmentation=AugmentationConfig()).augmentation == (
        AugmentationConfig()
    )
    arguments = cli.build_parser().parse_args(["train", "--data", "photos", "--end-to-end", "--xla"])
    config = from_preset(arguments.preset, **cli_flags.settings_from(arguments))
    assert (config.augmented_views, config.jit_compile, config.augmentation) == (0, True, AugmentationConfig())


@dataclass(frozen=True)
class WithMomentum(TrainConfig):
    momentum: float = setting(0.9, "momentum of the optimizer", min=0.0, max=1.0)


def test_a_field_added_to_train_config_becomes_a_flag_without_touching_the_cli():
    parser = argparse.ArgumentParser()
    cli_flags.add_setting_flags(parser, config_class=WithMomentum)
    momentum = _setting_flags(parser)["momentum"][0]
    assert momentum.option_strings == ["--momentum"] and momentum.type is float
    assert momentum.help == "momentum of the optimizer (default 0.9)"
    values = cli_flags.settings_from(parser.parse_args(["--data", "photos", "--momentum", "0.5"]), WithMomentum)
    assert values == {"data_dir": "photos", "momentum": 0.5}
    assert WithMomentum(**values).momentum == 0.5
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0.0, 1.0\], received 1.5"):
        WithMomentum(data_dir="photos", momentum=1.5)


def test_version_prints_the_package_version(capsys):
    result = _tlcore("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tlcore {tlcore.__version__}"
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"tlcore {tlcore.__version__}"


def test_lr_find_json_sweeps_with_the_generated_flags(small_catsdogs, tmp_path):
    from tlcore.training import lr_finder  # Imports Keras, which only the tests that train need.

    result = _tlcore(
        *("lr-find", "--data", str(small_catsdogs), "--backbone", "vgg16", "--weights", "none", "--image-size", "32"),
        *("--batch-size", "8", "--head", "flatten", "--steps", "10", "--runs-dir", str(tmp_path), "--json"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sweep = _json(result)
    assert sweep["learning_rates"][0] == pytest.approx(1e-6)
    assert len(sweep["losses"]) == len(sweep["learning_rates"]) >= 3
    assert sweep["suggestion"] == lr_finder.suggest(sweep["learning_rates"], sweep["losses"])  # Through the JSON.


def test_a_setting_out_of_bounds_fails_with_a_message_naming_it(tmp_path):
    result = _tlcore("train", "--data", str(tmp_path), "--epochs", "0", "--runs-dir", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "epochs must be an integer >= 1, received 0" in result.stderr


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["train", "--data", "{missing}"], "does not exist"),
        (["train", "--resume", "no-such-run"], "No run 'no-such-run'"),
        (["lr-find", "--data", "{missing}"], "does not exist"),
    ],
)
def test_train_and_lr_find_refusals_under_json_are_a_json_error(tmp_path, command, expected):
    # They printed the error on standard error only, so a script reading the JSON line found nothing.
    missing = str(tmp_path / "no such data")
    arguments = [part.replace("{missing}", missing) for part in command]
    result = _tlcore(*arguments, "--runs-dir", str(tmp_path / "runs"), "--json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert expected in _json(result)["error"]


def test_ctrl_c_while_tensorflow_starts_leaves_no_run_queued_without_a_process(small_catsdogs, tmp_path, monkeypatch):
    # The run folder was made before TensorFlow's seconds of import: Ctrl+C then left a "queued" run with no
    # process, shown a minute later as interrupted, and a resumed run queued and neither resumable nor deletable.
    from tlcore import cli_commands, console
    from tlcore.runs import resumption, store, worker

    def interrupted(verbose=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(console, "import_tensorflow_quietly", interrupted)
    monkeypatch.setattr(worker, "limit_malloc_arenas", lambda: None)  # This test process keeps its allocator.
    runs = tmp_path / "runs"
    arguments = cli.build_parser().parse_args(["train", "--data", str(small_catsdogs), "--runs-dir", str(runs)])
    with pytest.raises(KeyboardInterrupt):
        cli_commands.command_train(arguments)
    assert store.list_runs(runs) == []

    run = store.create(TrainConfig(data_dir=str(small_catsdogs)), runs)
    run.set_status("stopped")
    files.write_json(
        resumption.backup_folder(run, resumption.resume_point(run).stage) / resumption.METADATA_FILE, {"epoch": 1}
    )
    arguments = cli.build_parser().parse_args(["train", "--resume", run.id, "--runs-dir", str(runs)])
    with pytest.raises(KeyboardInterrupt):
        cli_commands.command_train(arguments)
    assert run.state == "stopped" and resumption.why_not_resumable(run) is None


def test_the_split_seed_has_its_own_flag_apart_from_the_seed():
    """--seed seeds the training; --split-seed the split of a data set without validation/ (the Data page's)."""
    for command in ("train", "lr-find"):
        flags = _setting_flags(_command(command))
        assert "--split-seed" in flags["split_seed"][0].option_strings
        assert "split of a data set without a validation folder (default 1337)" in flags["split_seed"][0].help
    arguments = cli.build_parser().parse_args(["train", "--data", "photos", "--seed", "3", "--split-seed", "7"])
    config = from_preset(arguments.preset, **cli_flags.settings_from(arguments))
    assert (config.seed, config.split_seed) == (3, 7)


@pytest.mark.parametrize("command", ["scan", "explore"])
def test_scan_and_explore_call_their_split_seed_split_seed_as_train_does(command):
    """Their only seed is the split's: --split-seed, as in train; --seed, the first name, still works."""
    parser = cli.build_parser()
    where = ["photos"] if command == "scan" else ["--data", "photos"]
    assert parser.parse_args([command, *where, "--split-seed", "7"]).split_seed == 7
    assert parser.parse_args([command, *where, "--seed", "4"]).split_seed == 4
    assert parser.parse_args([command, *where]).split_seed == 1337


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["predict", "--run", "r", "--top", "0", "photo.jpg"],
            "--top: expected a whole number 1 or more, received '0'",
        ),
        (
            ["evaluate", "--run", "r", "--mistakes", "-1"],
            "--mistakes: expected a whole number 0 or more, received '-1'",
        ),
        (["suggest", "--data", "d", "--image-size", "100000"], "expected a whole number from 32 to 600"),
        (["explore", "--data", "d", "--top", "many"], "--top: expected a whole number 0 or more, received 'many'"),
    ],
)
def test_counts_and_sizes_out_of_range_are_refused_before_anything_runs(arguments, message):
    # --top 0 printed one label anyway, --mistakes -1 a wrong count, and suggest --image-size 100000 ran out of memory.
    result = _tlcore(*arguments)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_runs_dir_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    # train made a run inside it and failed with FileExistsError; runs said "No runs in" the file.
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("a file")
    for arguments in (["runs"], ["train", "--data", str(tmp_path)], ["explore", "--data", str(tmp_path)]):
        result = _tlcore(*arguments, "--runs-dir", str(not_a_folder))
        assert result.returncode == 2 and f"--runs-dir: {not_a_folder}: not a folder" in result.stderr, result.stderr


def test_a_refused_setting_is_named_by_its_flag():
    # The checks name TrainConfig's fields: "rotation_degrees must be ...", a name the command line never shows.
    result = _tlcore("train", "--data", "photos", "--rotation", "400")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --rotation must be a number in [0.0, 180.0], received 400.0."
    result = _tlcore("lr-find", "--data", "photos", "--batch-size", "0")
    assert result.returncode == 2 and result.stderr.startswith("error: --batch-size must be an integer >= 1")


def test_the_worker_command_on_a_folder_that_is_not_a_run_says_so_and_makes_nothing(tmp_path):
    # It printed a TypeError traceback and made the folder, a status.json and a lock beside it.
    result = _tlcore("worker", str(tmp_path / "no run here"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {tmp_path / 'no run here'}: not a run folder (no config.json)."
    assert list(tmp_path.iterdir()) == []


def test_suggest_takes_the_split_of_the_run_to_follow_and_keeps_its_own_seed_for_the_folds(flat_small, tmp_path):
    parser = cli.build_parser()
    arguments = parser.parse_args(["suggest", "--data", "d", "--split-seed", "7", "--seed", "3"])
    assert (arguments.split_seed, arguments.seed, arguments.validation_fraction) == (7, 3, 0.2)

    split = ("--validation-fraction", "0.3", "--split-seed", "4", "--runs-dir", str(tmp_path))
    result = _tlcore("suggest", "--data", str(flat_small), "--per-class", "5", *split, "--json")
    assert result.returncode == 0, result.stderr
    # The flat set's 10 photos per class, 3 of each held out for validation: the check scores the other 7.
    assert _json(result)["feature_levels"]["images"] == 3 * 7
