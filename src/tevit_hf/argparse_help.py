"""The help format of every command-line parser (`tevit-hf ...`, `scripts/train.py`, `scripts/push_to_hub.py`)."""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, except where it is not informative or the help already says it.

    Flags (default False/True), options without a default (None) and help texts that already describe their default
    in words ("default: the model's config") are left as written.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if (
            action.default in (None, argparse.SUPPRESS)
            or isinstance(action.default, bool)
            or "default" in help_text.lower()
            or not action.option_strings
        ):
            return help_text
        return super()._get_help_string(action)


__all__ = ["DefaultsHelpFormatter"]
