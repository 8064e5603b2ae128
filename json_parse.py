"""The guide's `python3 json_parse.py --output=result/bs8/`:
``python3 -m unet_infer.guide.rename`` under this name, from wherever the file is moved.
"""

from unet_infer import cli
from unet_infer.guide import rename, script

main = script(rename, "json_parse.py")

if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
