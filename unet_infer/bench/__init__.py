"""The ais_bench-compatible runner ``python3 -m unet_infer.bench``."""
