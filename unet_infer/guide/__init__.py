"""The guide's four stage scripts as commands of the package.

Each module here holds one top-level script's whole command line (help, options, what it prints):
``preprocess_unet_pth.py`` -> ``python3 -m unet_infer.guide.preprocess``, ``unet_pth2onnx.py`` ->
``.export``, ``json_parse.py`` -> ``.rename``, ``postprocess_unet_pth.py`` -> ``.postprocess``.
The top-level scripts only call these, so they keep working wherever the user moves them (the
guide moves ``unet_pth2onnx.py`` into ``./Pytorch_UNet``), and the driver runs the package's
commands, never a script at a path.
"""
