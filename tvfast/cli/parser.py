"""The argument parser of every ``tvfast`` command: usage errors are one line and exit 2."""

from __future__ import annotations

import argparse

__all__ = ["CommandParser"]


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors print ``PROG: error: MESSAGE`` alone (no usage block)."""

    def error(self, message):  # argparse's exit status for usage errors: 2
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")
