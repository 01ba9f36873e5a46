"""Build steps that setup.cfg cannot express, both for the lm-eval integration (icm_plugin/integrations/lmeval/PACKAGING.md):

1. the repository's top-level ``tasks/`` (the icm_* lm-eval YAMLs) ships inside the package as
   ``icm_plugin/core/tasks/`` (with its README.md);
2. ``icm_plugin_lmeval.pth`` lands in site-packages, so the stock ``lm_eval`` finds those tasks without
   ``--include_path`` (the .pth is listed in RECORD: ``pip uninstall`` removes it).
"""

import warnings
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.warnings import InformationOnly

# `pip install -e .` of this flat layout gets setuptools' meta-path finder, which ends every editable build with a
# notice (not a warning: its category is InformationOnly) to beware of folders named like the package in the
# working directory; pip >= 25 shows backend notices as a screen of `!!` text on every set-up
warnings.filterwarnings("ignore", message="Editable installation", category=InformationOnly)

ROOT = Path(__file__).resolve().parent
TASKS = ROOT / "tasks"
PTH = ROOT / "icm_plugin" / "integrations" / "lmeval" / "icm_plugin_lmeval.pth"


class build_py_with_lmeval(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            # The package stays in the checkout (tasks_dir() finds tasks/ there); setuptools puts what lands in
            # the editable wheel's install_lib into site-packages, which is where a .pth must go.
            self.copy_file(str(PTH), str(Path(self.get_finalized_command("install").install_lib, PTH.name)))
            return
        target = Path(self.build_lib, "icm_plugin", "core", "tasks")
        self.mkpath(str(target))
        for path in sorted(TASKS.iterdir()):
            if path.is_file() and (path.suffix in (".yaml", ".py", ".md") or path.name.endswith("_yaml")):
                self.copy_file(str(path), str(target / path.name))
        self.copy_file(str(PTH), str(Path(self.build_lib, PTH.name)))


setup(cmdclass={"build_py": build_py_with_lmeval})
