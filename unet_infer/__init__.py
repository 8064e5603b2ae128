"""UNet segmentation inference for the Carvana car-masking data set.

The package holds the logic behind the stage scripts at the repository root
(preprocess, export, json_parse, postprocess), the ais_bench-compatible runner
``python3 -m unet_infer.bench`` and its backends, the sample-data generator and
the trainer for the bundled checkpoint.
"""

__version__ = "0.1.0"
