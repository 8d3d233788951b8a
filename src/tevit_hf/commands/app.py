"""`tevit-hf app`: a Gradio web demo of TeViT (also the app of the Space that `push_to_hub.py --space` writes).

    tevit-hf app [--model demo|DIR|ORG/NAME] [--host 127.0.0.1 --port 7860] [--max-frames 300] [--device cpu]

Upload a video (or pick the bundled sample), choose a model (the bundled demo model, a saved folder or a Hub repo
id), a score threshold and the clip schedule; the page shows the overlay video (one stable colour per track), a
table of the tracks and `results.json` for download. A progress bar follows the clips of the near-online tracker.
Every request runs through the CLI's flow (`predict.run_inference_arguments`: checks, the pipeline, results.json
and the overlay written as one unit); only the loaded model is kept between requests. Videos longer than
`--max-frames` are refused; user errors (the project's error layer) appear as one readable message in the page.
Gradio is the optional extra `app` (`pip install -e ".[app]"`).
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import USER_ERROR_TYPES, TeViTError, describe_user_error
from ..model_loading import DEFAULT_DTYPE, DTYPE_CHOICES
from ..tracking_tevit import DEFAULT_CLIP_LENGTH
from ..video_io import probe_video
from .predict import (
    BUNDLED_MODEL_NAME,
    DEFAULT_DISPLAY_THRESHOLD,
    Prediction,
    run_inference_arguments,
    summary_header,
    summary_rows,
)


logger = logging.getLogger(__name__)

# Longest upload the app segments by default (frames); a CPU Space takes about a second per few frames.
DEFAULT_MAX_FRAMES = 300
TABLE_HEADERS = ["track id", "class", "score", "frames visible", "first visible frame", "last visible frame"]
MAX_CLIP_LENGTH = 72
# Request folders (and Gradio's copies of the outputs) older than this are removed, so a long-running Space does
# not fill its disk.
KEEP_RESULTS_S = 3600
REQUEST_PREFIX = "request-"
APP_TITLE = "TeViT video instance segmentation"


class AppInputError(TeViTError, ValueError):
    """A request the app refuses (no video, a video above the frame limit, an unknown model)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=BUNDLED_MODEL_NAME,
        help=f"default model of the page: `{BUNDLED_MODEL_NAME}` (the bundled demo model), a saved TeViT folder or "
        f"a Hub repo id (default: {BUNDLED_MODEL_NAME})",
    )
    parser.add_argument(
        "--host", help="address to listen on (default: Gradio's, 127.0.0.1 or $GRADIO_SERVER_NAME; 0.0.0.0 for all)"
    )
    parser.add_argument("--port", type=int, help="port to listen on (default: Gradio's, 7860 or $GRADIO_SERVER_PORT)")
    parser.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULT_MAX_FRAMES,
        help=f"refuse videos with more frames than this (default: {DEFAULT_MAX_FRAMES})",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")
    parser.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default=DEFAULT_DTYPE,
        help="model dtype (default: auto, the dtype recorded in the model's config.json)",
    )
    parser.add_argument(
        "--output-root",
        help="folder for the results of each request (default: a temporary folder removed when the app stops)",
    )


def run(args: argparse.Namespace) -> int:
    from ..model_loading import check_device

    if args.max_frames < 1:
        raise AppInputError(f"--max-frames must be >= 1, got {args.max_frames}.")
    check_device(args.device)  # before the page is served, not at the first request
    # Which copy runs (a Space folder carries its own; `push_to_hub.py --space` checks this line).
    logger.info("tevit_hf %s from %s", __version__, Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory(prefix="tevit-app-") as temporary:
        app = TeViTApp(
            default_model=args.model,
            max_frames=args.max_frames,
            device=args.device,
            dtype=args.dtype,
            output_root=args.output_root or temporary,
        )
        launch(app, host=args.host, port=args.port)
    return 0


def launch(app: TeViTApp, host: str | None = None, port: int | None = None, block: bool = True) -> Any:
    """Serve the page of `app`; with `block=False` return the running `gradio.Blocks` (call `.close()`)."""
    demo = build_demo(app)
    demo.queue().launch(
        server_name=host,
        server_port=port,
        show_error=False,  # only gr.Error messages reach the page, never another exception's text
        allowed_paths=[str(app.output_root)],
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo


def main(argv: list[str] | None = None) -> int:
    """`python app.py [options]` (the Space's entry point): the `app` command with the error layer."""
    from .cli import main as cli_main

    return cli_main(["app", *(argv or [])])


class TeViTApp:
    """What the page does, without Gradio: resolve the model, check the video, run the CLI's flow, shape the outputs.

    One pipeline is kept loaded (the last model asked for); requests run one at a time (the Gradio queue's default
    concurrency is one per event, the lock makes the cache safe for other callers too).
    """

    def __init__(
        self,
        default_model: str = BUNDLED_MODEL_NAME,
        max_frames: int = DEFAULT_MAX_FRAMES,
        device: str = "cpu",
        dtype: str = DEFAULT_DTYPE,
        output_root: str | os.PathLike | None = None,
    ) -> None:
        self.default_model = default_model
        self.max_frames = max_frames
        self.device = device
        self.dtype = dtype
        self.output_root = Path(output_root) if output_root is not None else Path(tempfile.gettempdir())
        self._lock = threading.Lock()
        self._pipeline_key: tuple[str, str, str] | None = None
        self._pipeline: Any = None

    def segment(
        self,
        video: str | os.PathLike | None,
        model: str | None = None,
        threshold: float = DEFAULT_DISPLAY_THRESHOLD,
        clip_length: int = DEFAULT_CLIP_LENGTH,
        stride: int | None = None,
        progress_callback: Callable[[int, int | None], None] | None = None,
    ) -> Prediction:
        """Segment one uploaded video; results.json and overlay.mp4 land in a new folder under `output_root`."""
        self.output_root.mkdir(parents=True, exist_ok=True)
        self._remove_old_requests()
        if not video:
            raise AppInputError("No video: upload a video file or pick the example first.")
        info = probe_video(video)
        if info.num_frames > self.max_frames:
            raise AppInputError(
                f"{Path(video).name} has {info.num_frames} frames; this app segments at most {self.max_frames} "
                f"frames. Trim the video, or run `tevit-hf predict` locally for long videos."
            )
        clip_length = _whole_number(clip_length, "clip length")
        stride = None if stride in (None, "", 0) else _whole_number(stride, "stride")
        model_dir = resolve_model(model or self.default_model)
        request_dir = Path(tempfile.mkdtemp(prefix=REQUEST_PREFIX, dir=self.output_root))
        arguments = argparse.Namespace(
            output_dir=str(request_dir / "result"),
            overwrite=False,
            clip_length=clip_length,
            stride=stride,
            threshold=float(threshold),
            mask_threshold=None,
            display_threshold=float(threshold),
            device=self.device,
            dtype=self.dtype,
            overlay_format=["mp4"],
        )
        with self._lock:
            return run_inference_arguments(
                arguments,
                model_dir,
                video,
                default_overlay_formats=("mp4",),
                pipe=self._load(model_dir),
                progress_callback=progress_callback,
            )

    def _remove_old_requests(self) -> None:
        cutoff = time.time() - KEEP_RESULTS_S
        for folder in self.output_root.glob(f"{REQUEST_PREFIX}*"):
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    def _load(self, model_dir: Path) -> Any:
        from ..model_loading import check_device, load_pipeline

        key = (str(Path(model_dir).resolve()), self.device, self.dtype)
        if self._pipeline_key != key:
            check_device(self.device)
            self._pipeline = None  # release the previous model before loading the next one
            self._pipeline = load_pipeline(model_dir, device=self.device, dtype=self.dtype)
            self._pipeline_key = key
        return self._pipeline


def resolve_model(model: str) -> Path:
    """The local folder of `model`: `demo` (the bundled demo model), an existing folder, or a Hub repo id
    (downloaded with `huggingface_hub.snapshot_download`: configs and safetensors only; the strict loader runs the
    package's own classes, never a repository's code)."""
    model = model.strip()
    if model == BUNDLED_MODEL_NAME and not Path(model).exists():
        from .demo import bundled_demo_model_dir

        return bundled_demo_model_dir()
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        raise AppInputError(
            f"Model {model!r} is neither a folder nor a Hub repo id (ORG/NAME); use `{BUNDLED_MODEL_NAME}` for the "
            "bundled demo model."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = snapshot_download(model, allow_patterns=["*.json", "*.safetensors"])
    except (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, OSError, ValueError) as error:
        raise AppInputError(
            f"Could not download model {model!r} from the Hub: {describe_user_error(error)}"
        ) from error
    return Path(folder)


def result_table(prediction: Prediction) -> list[list[Any]]:
    """The page's table: one row per track (id, class, score, frames visible, first and last visible frame)."""
    return [
        [track_id, label, round(score, 3), frames, "-" if first is None else first, "-" if last is None else last]
        for track_id, label, score, frames, first, last in summary_rows(prediction.payload)
    ]


def _whole_number(value: Any, name: str) -> int:
    if value is None or float(value) != int(float(value)) or int(float(value)) < 1:
        raise AppInputError(f"The {name} must be a whole number >= 1, got {value!r}.")
    return int(float(value))


def build_demo(app: TeViTApp) -> Any:
    """The Gradio page of `app` (a `gradio.Blocks`; call `.queue().launch()`)."""
    try:
        import gradio as gr
    except ImportError as error:
        raise TeViTError('The app needs Gradio: pip install -e ".[app]" (or pip install gradio).') from error
    from .demo import bundled_sample_video

    def segment(video, model, threshold, clip_length, stride, progress=gr.Progress()):  # noqa: B008 (Gradio's API)
        def clip_done(done: int, total: int | None) -> None:
            progress((done, total), desc="near-online inference", unit="clips")

        progress(0, desc="checking the video")
        try:
            prediction = app.segment(video, model, threshold, clip_length, stride, progress_callback=clip_done)
        except USER_ERROR_TYPES as error:
            # One readable line in the page (the CLI's error layer wording), never a stack trace.
            message = describe_user_error(error)
            if video:  # the user knows the upload by its name, not by the server's upload path
                message = message.replace(str(video), Path(video).name)
            message = html.escape(message)
            raise gr.Error(message, duration=None, title="Cannot segment this video", print_exception=False) from None
        summary = summary_header(prediction.payload, prediction.inference_seconds)
        return (
            str(prediction.overlay_paths[0]),
            result_table(prediction),
            str(prediction.results_path),
            f"**{summary}**",
        )

    with gr.Blocks(title=APP_TITLE, analytics_enabled=False, delete_cache=(KEEP_RESULTS_S, KEEP_RESULTS_S)) as demo:
        gr.Markdown(
            f"# {APP_TITLE}\n"
            "[TeViT](https://arxiv.org/abs/2204.08412) (CVPR 2022) segments and tracks every object of a video. "
            "Upload a video or pick the example, then press **Segment**. Videos longer than the clip length run "
            f"near-online over overlapping clips linked into tracks. At most {app.max_frames} frames per video."
        )
        with gr.Row():
            with gr.Column():
                video_input = gr.Video(label="Video", sources=["upload"], elem_id="video-input")
                model_input = gr.Textbox(
                    value=app.default_model,
                    label="Model",
                    info=f"`{BUNDLED_MODEL_NAME}` (the bundled demo model), a saved TeViT folder or a Hub repo id",
                    elem_id="model-input",
                )
                threshold_input = gr.Slider(
                    0.0, 1.0, value=DEFAULT_DISPLAY_THRESHOLD, step=0.05, label="Score threshold", elem_id="threshold"
                )
                with gr.Row():
                    clip_length_input = gr.Number(
                        value=DEFAULT_CLIP_LENGTH,
                        precision=0,
                        minimum=1,
                        maximum=MAX_CLIP_LENGTH,
                        label="Clip length (frames)",
                        elem_id="clip-length",
                    )
                    stride_input = gr.Number(
                        value=0,
                        precision=0,
                        minimum=0,
                        label="Stride (frames; 0: half the clip length)",
                        elem_id="stride",
                    )
                run_button = gr.Button("Segment", variant="primary", elem_id="segment-button")
                with gr.Column(elem_id="example-videos"):
                    gr.Examples(
                        examples=[[str(bundled_sample_video())]],
                        inputs=[video_input],
                        label="Example: the bundled sample (synthetic shapes)",
                    )
            with gr.Column():
                overlay_output = gr.Video(label="Overlay", elem_id="overlay-video", interactive=False)
                summary_output = gr.Markdown(elem_id="summary")
                table_output = gr.Dataframe(
                    headers=TABLE_HEADERS, label="Tracks", elem_id="tracks-table", interactive=False
                )
                results_output = gr.File(label="results.json", elem_id="results-file")
        run_button.click(
            segment,
            inputs=[video_input, model_input, threshold_input, clip_length_input, stride_input],
            outputs=[overlay_output, table_output, results_output, summary_output],
        )
    return demo


__all__ = [
    "AppInputError",
    "DEFAULT_MAX_FRAMES",
    "TeViTApp",
    "add_arguments",
    "build_demo",
    "launch",
    "main",
    "resolve_model",
    "result_table",
    "run",
]
