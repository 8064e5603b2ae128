"""The guide's `python3 postprocess_unet_pth.py --output=result/bs8 --label=./carvana/train_masks --result=./result.txt`:
``python3 -m unet_infer.postprocess`` under this name, from wherever the file is moved.
"""

from functools import partial

from unet_infer import cli, postprocess

main = partial(postprocess.main, prog="postprocess_unet_pth.py")

if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
