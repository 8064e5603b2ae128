"""User-facing errors and the common ``main()`` wrapper of every command-line tool."""

import argparse
import logging
import sys


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` with the defaults shown and the description's command lines kept as written."""


def int_at_least(low):
    """An argparse type: a whole number no smaller than ``low``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below {low}")
        return value
    return parse


class UserError(Exception):
    """A problem with what the user gave us: printed as ``error: <message>``, exit status 2."""


def run_cli(main, argv=None):
    """Run ``main(argv)`` and turn user errors into one line on stderr and a non-zero exit.

    Returns the process exit status: ``main``'s own (0 when it returns None), 2 for a
    :class:`UserError`, 130 for Ctrl-C. Anything else is a bug and keeps its traceback.
    """
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s", stream=sys.stderr)
    try:
        status = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)
