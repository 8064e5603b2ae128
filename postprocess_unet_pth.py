"""The guide's `python3 postprocess_unet_pth.py --output=result/bs8 --label=./carvana/train_masks --result=./result.txt`:
``python3 -m unet_infer.guide.postprocess`` under this name, from wherever the file is moved.
"""

from unet_infer import cli
from unet_infer.guide import postprocess, script

main = script(postprocess, "postprocess_unet_pth.py")

if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
