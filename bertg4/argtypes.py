"""argparse value types shared by every subcommand (kept below ``cli`` so that subcommands
defined in other modules never import the command line module)."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def task_name(text: str) -> str:
    from .tasks import get_task
    try:
        return get_task(text).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
