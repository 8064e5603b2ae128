"""The guide's `python3 json_parse.py --output=result/bs8/`:
``python3 -m unet_infer.rename`` under this name, from wherever the file is moved.
"""

from functools import partial

from unet_infer import cli, rename

main = partial(rename.main, prog="json_parse.py")

if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
