"""The guide's `python3 preprocess_unet_pth.py --src_path=./carvana/train --save_bin_path=./prep_bin`:
``python3 -m unet_infer.preprocess`` under this name, from wherever the file is moved.
"""

from functools import partial

from unet_infer import cli, preprocess

main = partial(preprocess.main, prog="preprocess_unet_pth.py")

if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
