from ..backbones import smollm2_instruct_dir  # noqa: F401  (until demo/__init__.py imports it from ..backbones)
