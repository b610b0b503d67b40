"""The experiments run on the library: benchmark presets, the reproduction grid, its
report, the published numbers it is compared with, and the quick start."""
