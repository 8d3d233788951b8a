"""Loadable `evaluate` module for the YouTube-VIS AP metric.

Usage (offline, no Hub access):

    import evaluate
    metric = evaluate.load("path/to/tevit_hf/evaluation/youtube_vis_ap", annotations="valid.json")

`evaluate.load` copies this file into its module cache, so it cannot use relative imports: it imports the
implementation from the installed `tevit_hf` package (`pip install tevit-hf`), which must be importable wherever the
metric is loaded. Keeping one implementation avoids a second copy of the scorer drifting from the library's.
"""

# Import the module, not the class: evaluate picks the first metric class found in this file's namespace.
import tevit_hf.evaluation.metric as _library_metric


class YouTubeVISAP(_library_metric.YouTubeVISAP):
    """YouTube-VIS AP; see `tevit_hf.evaluation.metric.YouTubeVISAP`."""
