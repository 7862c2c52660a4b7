"""Builds the wheel with the repository's presets inside it.

The presets (`configuration/`) and the tiny processor (`processors/tiny/`) have one copy, at the repository's top
level; building the package copies them into `modeling_gaze2report/package_data/`, where an installed package finds
them with `importlib.resources`. An editable install reads the top-level folders directly.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PACKAGED_FOLDERS = ("configuration", "processors/tiny")


class BuildPyWithPresets(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "modeling_gaze2report" / "package_data"
        for folder in PACKAGED_FOLDERS:
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"setup.py: the folder {folder}/ to package is missing from the source tree")
            shutil.copytree(
                folder, target / folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )


setup(cmdclass={"build_py": BuildPyWithPresets})
