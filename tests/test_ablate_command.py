"""`tevit-hf ablate` end to end on a minuscule synthetic run: trains, re-evaluates, writes the paper's tables,
resumes without retraining, refuses to overwrite."""

import json

import pytest
from conftest import assert_cli_error

from tevit_hf.commands import ablate
from tevit_hf.commands.cli import main


TRAIN_ARGS = [
    "--", "--synthetic", "--synthetic_num_train_videos", "2", "--synthetic_num_val_videos", "1",
    "--synthetic_num_frames", "3", "--synthetic_height", "64", "--synthetic_width", "96",
    "--synthetic_num_classes", "2", "--synthetic_max_instances", "2", "--model_name_or_path", "tiny",
    "--clip_length", "2", "--train_scales", "96x64", "--scale_mode", "value", "--test_size", "96x64",
    "--per_device_train_batch_size", "1", "--num_workers", "0", "--num_threads", "1", "--max_train_steps", "1",
    "--config_overrides", "num_selected_instances=3",
]  # fmt: skip


def ablate_argv(output_dir, *options):
    return ["ablate", "--output-dir", str(output_dir), *options, *TRAIN_ARGS]


def test_ablation_runs_resumes_and_refuses_to_overwrite(tmp_path, capsys, monkeypatch):
    output_dir = tmp_path / "ablation"
    options = ["--variants", "tevit", "no_shift", "zero_messengers", "--seeds", "0", "1"]
    flops = ["--flops-height", "64", "--flops-width", "96", "--flops-frames", "2"]
    assert main(ablate_argv(output_dir, *options, *flops)) == 0

    record = json.loads((output_dir / ablate.RESULTS_JSON).read_text())
    assert set(record["variants"]) == {"tevit", "no_shift", "zero_messengers"}
    for name, variant in record["variants"].items():
        assert len(variant["AP"]["per_seed"]) == 2, name
        assert variant["AP"]["std"] is not None
        assert variant["gflops_per_frame"] > 0
        assert variant["num_parameters"] == record["variants"]["tevit"]["num_parameters"]  # shift variants: +0
    for name in ("tevit", "no_shift"):
        for seed in (0, 1):
            run_dir = output_dir / "runs" / name / f"seed_{seed}"
            config = json.loads((run_dir / "config.json").read_text())
            assert config["messenger_manipulation"] == ("none" if name == "no_shift" else "shift")
            assert json.loads((run_dir / ablate.RESULT_FILENAME).read_text())["seed"] == seed
    # The inference-only variant re-evaluated the trained runs instead of training.
    assert not (output_dir / "runs" / "zero_messengers" / "seed_0" / "config.json").exists()
    markdown = (output_dir / ablate.RESULTS_MARKDOWN).read_text()
    assert "| row | variant | AP | AP50 | AP75 | AR1 | AR10 | GFLOPs | params | paper AP | paper GFLOPs |" in markdown
    assert "`no_shift`" in markdown and " ± " in markdown

    # Resume: finished runs are kept, nothing is trained again; a new seed trains only that seed.
    def no_training(args):
        raise AssertionError(f"retrained {args.output_dir}")

    monkeypatch.setattr("tevit_hf.training.train", no_training)
    assert main(ablate_argv(output_dir, *options, "--no-flops")) == 0
    assert "(YouTube-VIS metric, %). GFLOPs not counted" in (output_dir / ablate.RESULTS_MARKDOWN).read_text()

    # Other training arguments in the same folder: refused, unless --overwrite.
    changed = ablate_argv(output_dir, *options)[:-1] + ["num_selected_instances=4"]
    assert_cli_error(capsys, changed, r"holds an ablation run with other training arguments.*--overwrite")
    monkeypatch.undo()
    assert (
        main(
            [
                *changed[:3],
                "--overwrite",
                "--variants",
                "tevit",
                "--seeds",
                "0",
                "--no-flops",
                *changed[-len(TRAIN_ARGS) :],
            ]
        )
        == 0
    )
    assert not (output_dir / "runs" / "no_shift").exists()

    # An unfinished run (no result record) continues from its latest checkpoint instead of being refused.
    from tevit_hf.training import train

    trained = []

    def recording_train(args):
        trained.append(args)
        return train(args)

    (output_dir / "runs" / "tevit" / "seed_0" / ablate.RESULT_FILENAME).unlink()
    monkeypatch.setattr("tevit_hf.training.train", recording_train)
    assert main([*changed[:3], "--variants", "tevit", "--seeds", "0", "--no-flops", *changed[-len(TRAIN_ARGS) :]]) == 0
    assert [args.resume_from_checkpoint for args in trained] == ["latest"]
    assert (output_dir / "runs" / "tevit" / "seed_0" / ablate.RESULT_FILENAME).is_file()


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--seed", "3"], r"training argument --seed is set by the runner"),
        (["--output_dir", "x"], r"training argument --output_dir is set by the runner"),
    ],
)
def test_reserved_training_arguments_are_refused(tmp_path, capsys, extra, pattern):
    assert_cli_error(capsys, ablate_argv(tmp_path / "out", "--variants", "tevit") + extra, pattern)


def test_missing_initial_weights_are_refused_before_the_folder_is_claimed(tmp_path, capsys):
    argv = ablate_argv(tmp_path / "out", "--variants", "tevit") + ["--init_from", str(tmp_path / "no_init")]
    assert_cli_error(capsys, argv, r"--init_from .*no_init: no such file or folder")
    assert not (tmp_path / "out").exists()


def test_other_files_in_the_output_folder_are_not_overwritten(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert_cli_error(capsys, ablate_argv(tmp_path, "--variants", "tevit"), r"already holds other files")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_every_table_row_names_a_variant_and_switches_are_valid():
    from tevit_hf import TeViTConfig

    for _, rows in ablate.TABLES.values():
        for row in rows:
            assert row.variant in ablate.VARIANTS
    for variant in ablate.VARIANTS.values():
        TeViTConfig(**variant.switches)  # raises on an invalid switch
        assert variant.evaluate_from is None or variant.evaluate_from in ablate.VARIANTS


def _prepare_after_barrier(barrier, output_dir, train_args, results):
    barrier.wait()
    try:
        ablate._prepare_output_dir(output_dir, train_args, overwrite=False)
        results.put("ok")
    except Exception as error:  # reported to the parent, which names it
        results.put(f"{type(error).__name__}: {error}")


def test_runners_started_side_by_side_share_one_folder(tmp_path):
    """One runner per seed, started at the same instant on a new folder (as `make ablate-synthetic` does): each one
    continues the folder another claimed a moment earlier instead of refusing its plan as foreign files."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    train_args = TRAIN_ARGS[1:]
    for attempt in range(5):
        output_dir = tmp_path / f"attempt_{attempt}"
        barrier, results = context.Barrier(6), context.Queue()
        processes = [
            context.Process(target=_prepare_after_barrier, args=(barrier, output_dir, train_args, results))
            for _ in range(6)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert sorted(results.get(timeout=5) for _ in processes) == ["ok"] * 6
        assert json.loads((output_dir / ablate.PLAN_FILENAME).read_text()) == {"train_args": train_args}
        assert [path.name for path in output_dir.iterdir()] == [ablate.PLAN_FILENAME]  # no draft left behind
