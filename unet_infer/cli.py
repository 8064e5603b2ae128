"""What every command-line tool of the package shares: the user error, ``main()`` wrapper, one
help formatter, the flag types and the key=value options of the scripts, so that each option reads
and fails the same way everywhere."""

import argparse
import contextlib
import difflib
import errno
import logging
import os
import re
import sys

from . import say_interrupted


class UserError(Exception):
    """A problem with what the user gave us: printed as ``error: <message>``, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` with the description's command lines kept as written and each default shown once
    (none for a flag, a required option, an empty default or help that states its own)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.required or action.nargs == 0 or action.default is None or action.default is False
                or (isinstance(action.default, list) and not action.default) or action.default == argparse.SUPPRESS
                or "default:" in text or "%(default)" in text):
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error in one line: ``error: <what> (see <prog> --help)``, exit status 2;
    a mistyped option is named with the one meant (``unknown option --modle, did you mean --model?``)."""

    _given = ()

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        if message.startswith(("the following arguments are required", "unrecognized arguments")):
            message = self.mistyped() or message
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def mistyped(self):
        """``unknown option X, did you mean Y?`` for the first unknown ``--option`` close to a known one."""
        for token in self._given:
            if token == "--":
                break
            name = str(token).split("=", 1)[0]
            if name.startswith("--") and name not in self._option_string_actions:
                close = difflib.get_close_matches(name, list(self._option_string_actions), n=1)
                if close:
                    return f"unknown option {name}, did you mean {close[0]}?"
        return None


def parser(prog, doc):
    """An ArgumentParser with our formatter, the module docstring as its description, no abbreviations."""
    return ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter, allow_abbrev=False)


def add_quiet(parser_):
    parser_.add_argument("--quiet", action="store_true", help="no progress display")


def number(kind, check, why):
    """An argparse type: an int or float (``kind``) for which ``check(value)`` holds, else ``"<text> <why>"``."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            what = "whole number" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text} {why}")
        return value
    return parse


def int_at_least(low):
    return number(int, lambda value: value >= low, f"is below {low}")


def int_list(text):
    """An argparse type: ``"1,4,8"`` -> ``[1, 4, 8]``, whole numbers above 0 (duplicates dropped, order kept)."""
    try:
        values = [int(part) for part in str(text).split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected a whole number above 0 or a comma list of them (e.g. 1,4,8), "
                                         f"got {text!r}")
    return list(dict.fromkeys(values))


positive_float = number(float, lambda value: value > 0, "must be above 0")


def str2bool(text):
    if text.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if text.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true, 1, false, 0)")


def device_list(text):
    """``--device``: one device id or a comma list (ais_bench's form), ids 0..255."""
    try:
        ids = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device id or a comma list of them") from None
    if any(not 0 <= i <= 255 for i in ids):
        raise argparse.ArgumentTypeError(f"{text}: device ids go from 0 to 255")
    if len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"{text}: a device is named twice")
    return ids


def first_line(exc, limit=200):
    """The first line of an exception's text (or its type name), at most ``limit`` characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


@contextlib.contextmanager
def stderr_quiet():
    """Send what C++ code (onnxsim, Ray) writes to file descriptor 2 nowhere, for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def os_error(path, exc, doing="write"):
    """A UserError for an OSError on ``path``: the reason in words (full disk, permission, ...)."""
    reason = {errno.ENOSPC: "the disk is full", errno.EACCES: "permission denied", errno.EPERM:
              "operation not permitted", errno.EROFS: "read-only file system", errno.ENOTDIR:
              "a part of the path is a file, not a folder", errno.EDQUOT: "disk quota exceeded"}.get(
        getattr(exc, "errno", None), exc.strerror if getattr(exc, "strerror", None) else first_line(exc))
    return UserError(f"{path}: cannot {doing} ({reason})")


def run_cli(main, argv=None):
    """``main(argv)``'s exit status (0 for None), 2 for a :class:`UserError` (one line on stderr), 130
    for Ctrl-C, 1 for a full disk or another OS error on a file; anything else keeps its traceback."""
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s", stream=sys.stderr)
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say_interrupted()
        return 130
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM):
            print(f"error: {os_error(exc.filename or 'a file', exc, 'write')}", file=sys.stderr)
            return 1
        raise
    return 0 if status is None else int(status)


def flag(name):
    """Both spellings of a multi-word flag, as every tool here accepts them: ``--a_b`` and ``--a-b``."""
    return [f"--{name}", f"--{name.replace('_', '-')}"] if "_" in name else [f"--{name}"]


def key_values(args, options, prog):
    """``{key: value}`` of a script's ``key=value`` arguments, the others at their defaults; ``options``
    is ``{key: (default, the form of its value as a regular expression, that form in words)}``."""
    values = {key: default for key, (default, _, _) in options.items()}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in options:
            raise UserError(f"unknown option '{arg}' (options are key=value; see {prog} --help)")
        _, form, what = options[key]
        if not re.fullmatch(form, value):
            raise UserError(f"{key} must be {what}, got '{value}'" if value else f"{key}= needs {what}")
        values[key] = value
    return values
