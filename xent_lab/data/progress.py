"""Short progress lines on stderr for the slow steps (downloads, reading archives, vectorizing)."""

import sys


def note(enabled: bool, message: str) -> None:
    """Print one progress line to stderr when `enabled`; stdout stays free for the caller's output."""
    if enabled:
        print(f"[xent_lab.data] {message}", file=sys.stderr, flush=True)
