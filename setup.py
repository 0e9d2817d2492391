"""Maps the `services/` tree onto the `loraforge` import root (see ARCHITECTURE.md).

pyproject.toml holds all metadata; this file only lists packages, which a static
`packages.find` cannot do under a renamed root.
"""

from setuptools import find_packages, setup

setup(packages=["loraforge", *(f"loraforge.{p}" for p in find_packages("services"))])
