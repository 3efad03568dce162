"""Build hook: the wheel also carries the top-level ``boilerplate/`` (methods-text templates) as package data.

The product layout keeps the templates in ``boilerplate/`` at the repository root; an installed package finds
them in ``neurocare_bids/boilerplate/`` (see ``neurocare_bids/reports/citation.py``). Everything else is
configured in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithBoilerplate(build_py):
    def run(self):
        super().run()
        source = Path("boilerplate")
        if not (source / "citation.md.j2").is_file():
            raise FileNotFoundError("boilerplate/citation.md.j2 is not in the build folder: the methods-text "
                                    "templates must be built into the package (copy boilerplate/ with setup.py)")
        target = Path(self.build_lib) / "neurocare_bids" / "boilerplate"
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.iterdir()):
            if path.is_file():
                shutil.copyfile(path, target / path.name)


setup(cmdclass={"build_py": BuildWithBoilerplate})
