"""`tevit-hf ablate`: train and evaluate the paper's ablation variants on the same data, seeds and schedule, and
write the paper's tables (AP +- sigma over seeds, AP50, AP75, AR1, AR10, GFLOPs, parameters) as markdown and JSON.

    tevit-hf ablate --output-dir ablations --tables 4 12 --seeds 0 1 -- --synthetic --model_name_or_path tiny ...

Everything after `--` is passed to every training run (`scripts/train.py` arguments, without `--output_dir` and
`--seed`, which the runner sets per run). Each run goes to `<output-dir>/runs/<variant>/seed_<k>`; a run whose
`ablation_result.json` exists is finished and is never retrained, so an interrupted ablation continues where it
stopped (an unfinished run resumes from its latest checkpoint). Variants that only change inference (paper Tab. 12)
re-evaluate the trained released-model runs instead of training again. The variants and the paper's numbers are in
`docs/ablations.md`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError, TeViTError
from ..file_utils import is_atomic_draft, write_json_atomic, write_text_atomic


logger = logging.getLogger(__name__)

PLAN_FILENAME = "ablation_plan.json"
RESULT_FILENAME = "ablation_result.json"
RESULTS_JSON = "ablation_results.json"
RESULTS_MARKDOWN = "ablation_results.md"
METRIC_NAMES = ("AP", "AP50", "AP75", "AR1", "AR10")
# Options the runner sets for each run; the user's training arguments must not.
RESERVED_TRAIN_OPTIONS = ("--output_dir", "--seed", "--overwrite_output_dir", "--resume_from_checkpoint")


@dataclass(frozen=True)
class Variant:
    """A model variant: `TeViTConfig` switches. `evaluate_from` names the trained variant whose runs are only
    re-evaluated with these switches (switches read at inference only)."""

    description: str
    switches: dict[str, Any] = field(default_factory=dict)
    evaluate_from: str | None = None


VARIANTS: dict[str, Variant] = {
    "tevit": Variant("MsgShifT + STQI (released model)"),
    "no_shift": Variant("messenger tokens kept, no shift", {"messenger_manipulation": "none"}),
    "spatial": Variant("spatial query interaction only (QueryInst)", {"query_interaction": "spatial"}),
    "no_shift_spatial": Variant(
        "no messenger shift, spatial query interaction only",
        {"messenger_manipulation": "none", "query_interaction": "spatial"},
    ),
    "fused": Variant("fused space-time query interaction (VisTR-style)", {"query_interaction": "fused"}),
    "temporal": Variant("temporal query interaction only", {"query_interaction": "temporal"}),
    "messenger_mhsa_ffn": Variant("MHSA + FFN over the messenger tokens", {"messenger_manipulation": "mhsa_ffn"}),
    "frame_conv": Variant(
        "temporal conv over frame features", {"messenger_manipulation": "none", "frame_aggregation": "conv"}
    ),
    "frame_mhsa_ffn": Variant(
        "MHSA + FFN over time on frame features", {"messenger_manipulation": "none", "frame_aggregation": "mhsa_ffn"}
    ),
    "zero_messengers": Variant(
        "messenger tokens set to zero at inference", {"inference_messenger_tokens": "zero"}, evaluate_from="tevit"
    ),
    "random_messengers": Variant(
        "random messenger tokens at inference", {"inference_messenger_tokens": "random"}, evaluate_from="tevit"
    ),
}


@dataclass(frozen=True)
class TableRow:
    label: str  # the paper's row
    variant: str
    paper_ap: float | None = None  # YouTube-VIS-2019 val AP of the paper (mean of runs), where the spec gives it
    paper_gflops: float | None = None


# The paper's ablation tables (section 4.4). Numbers: the paper as quoted in the project's specification, section 11;
# None where the specification does not quote them.
TABLES: dict[str, tuple[str, tuple[TableRow, ...]]] = {
    "4": (
        "Tab. 4: messenger shift (MSM) x STQI",
        (
            TableRow("baseline", "no_shift_spatial", 42.5, 81.97),
            TableRow("+ MsgShift", "spatial", 43.1),
            TableRow("+ STQI", "no_shift", 45.2),
            TableRow("+ MsgShift + STQI", "tevit", 45.9, 82.19),
        ),
    ),
    "5": (
        "Tab. 5: query interaction",
        (
            TableRow("Spatial only (QueryInst)", "spatial"),
            TableRow("Fused space-time (VisTR)", "fused"),
            TableRow("Ours (STQI)", "tevit", 45.9),
        ),
    ),
    "6": (
        "Tab. 6: messenger manipulation",
        (
            TableRow("none", "no_shift"),
            TableRow("MHSA + FFN", "messenger_mhsa_ffn"),
            TableRow("shift (ours)", "tevit", 45.9),
        ),
    ),
    "7": (
        "Tab. 7: frame-level aggregation",
        (
            TableRow("none", "no_shift"),
            TableRow("Conv", "frame_conv"),
            TableRow("MHSA + FFN", "frame_mhsa_ffn"),
            TableRow("messenger shift (ours)", "tevit", 45.9),
        ),
    ),
    "11": (
        "Tab. 11 (row 3): STQI without the spatial MHSA",
        (TableRow("temporal only", "temporal"), TableRow("spatial + temporal (ours)", "tevit", 45.9)),
    ),
    "12": (
        "Tab. 12: messenger tokens at inference",
        (
            TableRow("learned", "tevit", 45.9),
            TableRow("zero", "zero_messengers", 45.5),
            TableRow("random", "random_messengers", 45.6),
        ),
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", required=True, help="where the runs, the tables and the JSON go")
    parser.add_argument(
        "--tables", nargs="+", choices=list(TABLES), default=None, help="paper tables to reproduce (default: all)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=None,
        help="run these variants (one table of them) instead of --tables (default: the tables' variants)",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of every variant (default: 0 1 2)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="remove an earlier ablation in --output-dir and start over"
    )
    parser.add_argument(
        "--flops-height", type=int, default=360, help="frame height of the GFLOPs count (default: 360)"
    )
    parser.add_argument("--flops-width", type=int, default=640, help="frame width of the GFLOPs count (default: 640)")
    parser.add_argument("--flops-frames", type=int, default=36, help="clip length T of the GFLOPs count (default: 36)")
    parser.add_argument("--no-flops", action="store_true", help="skip the GFLOPs count")
    parser.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="after `--`: scripts/train.py arguments shared by every run (not --output_dir/--seed)",
    )


def run(args: argparse.Namespace) -> int:
    train_args = list(args.train_args)
    if train_args[:1] == ["--"]:
        train_args = train_args[1:]
    if args.variants and args.tables:
        raise TeViTError("give --tables or --variants, not both")
    if len(set(args.seeds)) != len(args.seeds):
        raise TeViTError(f"--seeds must be distinct, got {args.seeds}")
    tables = _selected_tables(args)
    output_dir = Path(args.output_dir)
    train_args = _check_train_args(train_args, output_dir)
    _prepare_output_dir(output_dir, train_args, args.overwrite)

    variants = _variants_to_run(tables)
    runs = {name: {seed: _run_variant(name, seed, output_dir, train_args) for seed in args.seeds} for name in variants}
    summary = {name: _summarize(name, runs[name], output_dir, args) for name in variants}
    record = {
        "train_args": train_args,
        "seeds": args.seeds,
        "flops": None
        if args.no_flops
        else {"height": args.flops_height, "width": args.flops_width, "num_frames": args.flops_frames},
        "variants": summary,
        "tables": {key: {"title": title, "rows": [row.__dict__ for row in rows]} for key, (title, rows) in tables},
    }
    markdown = format_tables(record)
    write_json_atomic(output_dir / RESULTS_JSON, record)
    write_text_atomic(output_dir / RESULTS_MARKDOWN, markdown)
    print(markdown, flush=True)
    logger.info("wrote %s and %s", output_dir / RESULTS_MARKDOWN, output_dir / RESULTS_JSON)
    return 0


def _selected_tables(args: argparse.Namespace) -> list[tuple[str, tuple[str, tuple[TableRow, ...]]]]:
    if args.variants:
        rows = tuple(TableRow(VARIANTS[name].description, name) for name in dict.fromkeys(args.variants))
        return [("variants", ("Selected variants", rows))]
    keys = args.tables or list(TABLES)
    return [(key, TABLES[key]) for key in dict.fromkeys(keys)]


def _variants_to_run(tables) -> list[str]:
    """The variants of the tables, each once, trained variants before those re-evaluating them."""
    names = [row.variant for _, (_, rows) in tables for row in rows]
    names += [VARIANTS[name].evaluate_from for name in names if VARIANTS[name].evaluate_from]
    ordered = list(dict.fromkeys(names))
    return sorted(ordered, key=lambda name: VARIANTS[name].evaluate_from is not None)


def _check_train_args(train_args: list[str], output_dir: Path) -> list[str]:
    """Validate the shared training arguments once (with a placeholder output folder) and pin the synthetic data
    folder so that every run reads the same generated videos."""
    from ..training import parse_arguments
    from ..training.model_setup import check_weight_sources

    if not train_args:
        raise TeViTError("give the training arguments after `--`, e.g. `-- --synthetic --model_name_or_path tiny`")
    for option in RESERVED_TRAIN_OPTIONS:
        if any(argument == option or argument.startswith(option + "=") for argument in train_args):
            raise TeViTError(f"training argument {option} is set by the runner for each run; remove it after `--`")
    parsed = parse_arguments([*train_args, "--output_dir", str(output_dir / "runs" / "check")])
    check_weight_sources(parsed.init_from, parsed.backbone_init_from)
    if parsed.synthetic and parsed.synthetic_dir is None:
        train_args = [*train_args, "--synthetic_dir", str(output_dir / "synthetic_data")]
    if not parsed.synthetic and not parsed.val_annotations:
        raise TeViTError(
            "the ablation scores every run: give --val_annotations (and frames) in the training arguments"
        )
    return train_args


def _prepare_output_dir(output_dir: Path, train_args: list[str], overwrite: bool) -> None:
    """Resume an ablation with the same training arguments; refuse anything else unless `overwrite`.

    Several runners may start side by side on one folder (one per seed): the first to publish its plan file claims the
    folder, and the others then find that plan and continue it instead of taking it for foreign files.
    """
    plan_path = output_dir / PLAN_FILENAME
    if output_dir.exists() and overwrite:
        logger.info("--overwrite: removing the earlier ablation in %s", output_dir)
        shutil.rmtree(output_dir)
    if not plan_path.is_file():
        # A claiming runner writes its plan before anything else, so files beside a missing plan (other than a
        # plan being written) are foreign.
        output_dir.mkdir(parents=True, exist_ok=True)
        others = [path for path in output_dir.iterdir() if not is_atomic_draft(path, of=plan_path)]
        if others and not plan_path.is_file():
            raise OutputExistsError(
                f"{output_dir} already holds other files; pass --overwrite to replace them, or choose another folder"
            )
        with contextlib.suppress(FileExistsError):  # another runner claimed the folder first: its plan stands
            write_json_atomic(plan_path, {"train_args": train_args}, exclusive=True)
    earlier = json.loads(plan_path.read_text())
    if earlier.get("train_args") != train_args:
        raise OutputExistsError(
            f"{output_dir} holds an ablation run with other training arguments ({plan_path}); pass --overwrite "
            "to start over, or choose another --output-dir"
        )
    logger.info("ablation in %s (finished runs are kept)", output_dir)


def _run_dir(output_dir: Path, name: str, seed: int) -> Path:
    return output_dir / "runs" / name / f"seed_{seed}"


def _run_variant(name: str, seed: int, output_dir: Path, train_args: list[str]) -> dict[str, Any]:
    """Train (or re-evaluate) one variant with one seed, unless finished earlier; returns its result record."""
    run_dir = _run_dir(output_dir, name, seed)
    result_path = run_dir / RESULT_FILENAME
    if result_path.is_file():
        logger.info("%s seed %d: finished earlier, kept (%s)", name, seed, result_path)
        return json.loads(result_path.read_text())
    variant = VARIANTS[name]
    if variant.evaluate_from:
        trained_dir = _run_dir(output_dir, variant.evaluate_from, seed)
        result = _evaluate_variant(variant, trained_dir, run_dir, train_args)
    else:
        result = _train_variant(variant, seed, run_dir, train_args)
    result = {"variant": name, "seed": seed, "switches": variant.switches, **result}
    write_json_atomic(result_path, result)
    return result


def _train_variant(variant: Variant, seed: int, run_dir: Path, train_args: list[str]) -> dict[str, Any]:
    from ..overrides import parse_overrides
    from ..training import parse_arguments, train

    arguments = list(train_args)
    if variant.switches:
        # The variant's switches win over the shared overrides (the later value of a repeated key is kept).
        switches = ",".join(f"{key}={value}" for key, value in variant.switches.items())
        if "--config_overrides" in arguments:
            index = arguments.index("--config_overrides") + 1
            parse_overrides(arguments[index], option="--config_overrides")  # fail early on a malformed value
            arguments[index] = f"{arguments[index]},{switches}"
        else:
            arguments += ["--config_overrides", switches]
    arguments += ["--output_dir", str(run_dir), "--seed", str(seed)]
    if run_dir.exists():
        logger.info("%s: continuing an unfinished run", run_dir)
        arguments += ["--resume_from_checkpoint", "latest"]
    logger.info("training %s", run_dir)
    metrics = train(parse_arguments(arguments))
    if not metrics:
        raise TeViTError(f"{run_dir}: training returned no validation metrics (is there a validation set?)")
    return {
        "metrics": {name: metrics[name] for name in METRIC_NAMES},
        "num_parameters": _trained_num_parameters(run_dir),
        "model_dir": str(run_dir),
    }


def _trained_num_parameters(run_dir: Path) -> int:
    from ..training.trainer import TRAIN_RESULTS_FILENAME

    return json.loads((run_dir / TRAIN_RESULTS_FILENAME).read_text())["num_parameters"]


def _evaluate_variant(variant: Variant, trained_dir: Path, run_dir: Path, train_args: list[str]) -> dict[str, Any]:
    """Offline inference of a trained run with the variant's inference-time switches, scored on the same
    validation videos as the training evaluation."""
    from ..evaluation.youtube_vis_eval import evaluate_youtube_vis
    from ..training import parse_arguments
    from ..training.data_setup import resolve_data_paths
    from .evaluate import run_inference

    # The training arguments name the validation data (the trained run's folder would be refused as output).
    paths = resolve_data_paths(parse_arguments([*train_args, "--output_dir", str(run_dir)]))
    logger.info("evaluating %s with %s", trained_dir, variant.switches)
    results = run_inference(
        trained_dir,
        paths.val_annotations,
        paths.val_frames_dir,
        output_dir=run_dir / "evaluation",  # per-video documents: a killed evaluation resumes
        config_overrides=variant.switches,
    )
    metrics = evaluate_youtube_vis(paths.val_annotations, results)
    return {
        "metrics": {name: metrics[name] for name in METRIC_NAMES},
        "num_parameters": _trained_num_parameters(trained_dir),
        "model_dir": str(trained_dir),
    }


def _summarize(name: str, runs: dict[int, dict[str, Any]], output_dir: Path, args: argparse.Namespace) -> dict:
    """Mean and sample standard deviation over seeds of every metric, the parameters and the GFLOPs per frame."""
    summary: dict[str, Any] = {"description": VARIANTS[name].description, "switches": VARIANTS[name].switches}
    for metric in METRIC_NAMES:
        values = [100 * run["metrics"][metric] for run in runs.values()]
        summary[metric] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "per_seed": values,
        }
    first = runs[min(runs)]
    summary["num_parameters"] = first["num_parameters"]
    summary["gflops_per_frame"] = None if args.no_flops else _gflops(name, Path(first["model_dir"]), output_dir, args)
    return summary


def _gflops(name: str, model_dir: Path, output_dir: Path, args: argparse.Namespace) -> float:
    """GFLOPs per frame of one inference forward of the trained model (the benchmark's counter), cached."""
    from .benchmark import BenchmarkSettings, flops_per_frame

    settings = BenchmarkSettings(
        model_path=str(model_dir),
        height=args.flops_height,
        width=args.flops_width,
        num_frames=args.flops_frames,
        config_overrides=dict(VARIANTS[name].switches),
    )
    cache = output_dir / "runs" / name / "flops.json"
    key = {"height": settings.height, "width": settings.width, "num_frames": settings.num_frames}
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("settings") == key:
            return cached["gflops_per_frame"]
    gflops = flops_per_frame(settings)["gflops_per_frame"]
    write_json_atomic(cache, {"settings": key, "gflops_per_frame": gflops})
    return gflops


def format_tables(record: dict[str, Any]) -> str:
    """The paper's layout: one markdown table per paper table, AP as mean +- sample std over the seeds (in %)."""
    seeds = record["seeds"]
    flops = record["flops"]
    flops_note = (
        f"GFLOPs per frame at {flops['height']}x{flops['width']} (height x width), T={flops['num_frames']} (torch "
        "FlopCounterMode, "
        "1 multiply-add = 2 FLOPs)"
        if flops
        else "GFLOPs not counted"
    )
    lines = [
        f"Seeds {', '.join(map(str, seeds))}: AP is the mean +- sample standard deviation over the seeds, the other "
        f"metrics are means (YouTube-VIS metric, %). {flops_note}. Paper: YouTube-VIS-2019 val AP and GFLOPs, where "
        "the specification quotes them.",
    ]
    for title, rows in ((table["title"], table["rows"]) for table in record["tables"].values()):
        lines += [
            "",
            f"**{title}**",
            "",
            "| row | variant | AP | AP50 | AP75 | AR1 | AR10 | GFLOPs | params | paper AP | paper GFLOPs |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            variant = record["variants"][row["variant"]]
            ap = variant["AP"]
            ap_text = f"{ap['mean']:.1f}" + (f" ± {ap['std']:.1f}" if ap["std"] is not None else "")
            cells = [row["label"], f"`{row['variant']}`", ap_text]
            cells += [f"{variant[metric]['mean']:.1f}" for metric in METRIC_NAMES[1:]]
            gflops = variant["gflops_per_frame"]
            cells += [_optional(gflops, ".2f" if gflops is None or gflops >= 10 else ".3f")]
            cells += [f"{variant['num_parameters']:,}"]
            cells += [_optional(row["paper_ap"], ".1f"), _optional(row["paper_gflops"], ".2f")]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _optional(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


__all__ = ["TABLES", "VARIANTS", "add_arguments", "format_tables", "run"]
