"""Stage 5 of the guide: python3 json_parse.py --output=result/bs8/

A thin script: the command itself is ``python3 -m unet_infer.guide.rename`` (``--help`` says what it
does), so this file works from wherever it is moved.
"""

from unet_infer import cli
from unet_infer.guide import rename


def main(argv=None):
    return rename.main(argv, prog="json_parse.py")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
