"""What every command shares: one-line errors with the right exit status, Ctrl-C, a full disk."""

import argparse
import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from unet_infer import cli
from unet_infer.cli import UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]


def test_exit_statuses_and_one_line_messages(capsys):
    def raising(exc):
        def main(argv):
            raise exc
        return main

    assert run_cli(raising(UserError("x.bin: 3 bytes, expected 4"))) == 2
    assert capsys.readouterr().err == "error: x.bin: 3 bytes, expected 4\n"
    assert run_cli(raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    assert run_cli(raising(OSError(errno.ENOSPC, "No space left on device", "/w/out.bin"))) == 1
    assert capsys.readouterr().err == "error: /w/out.bin: cannot write (the disk is full)\n"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_cli(raising(ZeroDivisionError()))
    assert run_cli(lambda argv: 3) == 3 and run_cli(lambda argv: None) == 0


def test_usage_errors_are_one_line_and_help_shows_each_default_once(capsys):
    def main(argv):
        parser = cli.parser("prog", "Does a thing.\n\n    prog --n 3")
        parser.add_argument("--n", type=cli.int_at_least(1), default=2, help="how many")
        parser.add_argument("--name", required=True, help="a name")
        parser.add_argument("--given", default=5, help="how many (default: five)")
        parser.add_argument(*cli.flag("two_words"), dest="two_words", action="store_true", help="a flag")
        parser.add_argument("--no-check", dest="check", action="store_false", help="skip the check")
        parser.add_argument("--input", action="append", default=[], help="a file; repeatable")
        parser.parse_args(argv)

    assert run_cli(main, ["--name", "a", "--n", "0"]) == 2
    assert capsys.readouterr().err == "error: argument --n: 0 is below 1 (see prog --help)\n"
    assert run_cli(main, ["--name", "a", "--two-words", "--two_words"]) == 0
    assert run_cli(main, ["--help"]) == 0
    text = capsys.readouterr().out
    assert "prog --n 3" in text and "how many (default: 2)" in text and "(default: five)" in text
    assert "(default: 5)" not in text and "(default: None)" not in text and "(default: False)" not in text
    assert "skip the check\n" in text and "(default: True)" not in text and "(default: [])" not in text


def test_ctrl_c_is_silent_where_the_driver_says_it(capsys, monkeypatch):
    def main(argv):
        raise KeyboardInterrupt
    monkeypatch.setenv("UNET_INFER_SILENT_INTERRUPT", "1")  # scripts/run_all.sh: its trap prints the line
    assert run_cli(main) == 130 and capsys.readouterr().err == ""
    proc = subprocess.run([sys.executable, "-c", "import unet_infer; raise KeyboardInterrupt"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "UNET_INFER_SILENT_INTERRUPT": "1"})
    assert proc.returncode in (130, -signal.SIGINT) and proc.stderr == ""


def test_a_wrapper_names_the_program_and_no_child_inherits_it(monkeypatch, capsys):
    from unet_infer import simplify
    monkeypatch.setenv("UNET_INFER_PROG", "scripts/onnxsim.sh")
    assert run_cli(simplify.main, ["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: scripts/onnxsim.sh ")
    assert "UNET_INFER_PROG" not in os.environ
    assert run_cli(simplify.main, ["--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: python3 -m unet_infer.simplify ")


def test_int_list_and_devices():
    assert cli.int_list("8,1,8,32") == [8, 1, 32]
    for bad in ("", "0", "a", "1,,2", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="comma list"):
            cli.int_list(bad)
    assert cli.device_list("0,1") == [0, 1]
    for bad in ("x", "0,0", "256"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.device_list(bad)


def test_key_values_are_checked_by_their_table():
    options = {"bs": ("8", "[1-9][0-9]*", "a batch size"), "data": ("", ".+", "a folder")}
    assert cli.key_values(["bs=4"], options, "scripts/x.sh") == {"bs": "4", "data": ""}
    for args, message in ((["bs=0"], "bs must be a batch size, got '0'"), (["data="], "data= needs a folder"),
                          (["colour=red"], "unknown option 'colour=red' (options are key=value; see scripts/x.sh --help)"),
                          (["bs"], "unknown option 'bs' (options are key=value; see scripts/x.sh --help)")):
        with pytest.raises(UserError) as exc:
            cli.key_values(args, options, "scripts/x.sh")
        assert str(exc.value) == message


def test_ctrl_c_while_python_imports_is_one_line_and_130():
    proc = subprocess.run([sys.executable, "-c", "import unet_infer; raise KeyboardInterrupt"], cwd=ROOT,
                          capture_output=True, text=True)
    # Python ends by SIGINT (a shell shows 130), after our one line instead of a traceback
    assert proc.returncode in (130, -signal.SIGINT) and proc.stderr == "error: interrupted\n"


def test_a_mistyped_option_is_named_with_the_one_meant(capsys):
    def main(argv):
        parser = cli.parser("prog", "Does a thing.")
        parser.add_argument("--model", required=True, help="a model")
        parser.add_argument(*cli.flag("warmup_count"), dest="warmup_count", default=1, help="runs")
        parser.parse_args(argv)

    for argv, typo, meant in ((["--modle=x.onnx"], "--modle", "--model"),  # before "--model is required"
                              (["--model", "x", "--warmup_cuont", "2"], "--warmup_cuont", "--warmup_count")):
        assert run_cli(main, argv) == 2
        assert capsys.readouterr().err == f"error: unknown option {typo}, did you mean {meant}? (see prog --help)\n"
    assert run_cli(main, ["--frobnicate"]) == 2  # nothing close: argparse's own words
    assert capsys.readouterr().err == "error: the following arguments are required: --model (see prog --help)\n"
    assert run_cli(main, ["--model", "x", "--", "--modle"]) == 2  # after "--": not an option
    assert "unrecognized arguments: -- --modle" in capsys.readouterr().err


def test_the_runner_names_a_mistyped_option(capsys):
    from unet_infer.bench.runner import main
    assert run_cli(main, ["--modle=x.onnx", "--input=prep_bin"]) == 2
    assert capsys.readouterr().err == ("error: unknown option --modle, did you mean --model? "
                                       "(see python3 -m unet_infer.bench --help)\n")
