"""The discovery hook: the .pth line, the wrapped TaskManager, and its cost at interpreter start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from icm_plugin.core import discovery
from icm_plugin.integrations.lmeval import tasks_dir

REPO = Path(__file__).resolve().parents[1]
PTH = REPO / "icm_plugin" / "integrations" / "lmeval" / "icm_plugin_lmeval.pth"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=300)


class FakeTaskManager:
    def __init__(self, verbosity=None, include_path=None, include_defaults=True, metadata=None):
        self.include_path = include_path
        self.include_defaults = include_defaults


def _fresh_class():
    return type("TM", (FakeTaskManager,), {"__init__": FakeTaskManager.__init__})


def test_wrapped_task_manager_adds_our_folder_first():
    cls = _fresh_class()
    assert discovery.wrap_task_manager(cls) and discovery.wrap_task_manager(cls)  # idempotent
    ours = str(tasks_dir())
    assert cls().include_path == [ours]
    assert cls(include_path="/mine").include_path == [ours, "/mine"]
    assert cls(None, ["/a", "/b"]).include_path == [ours, "/a", "/b"]  # positional
    assert cls(include_path=[ours]).include_path == [ours]  # not twice
    assert cls(include_defaults=False, include_path="/only").include_path == "/only"  # respected


def test_a_task_manager_without_include_path_is_left_alone():
    class Other:
        def __init__(self, paths=None):
            self.paths = paths

    original = Other.__init__
    assert not discovery.wrap_task_manager(Other)
    assert Other.__init__ is original


def test_tasks_dir_holds_the_yamls():
    names = {p.name for p in tasks_dir().iterdir()}
    assert {"icm.yaml", "icm_truthfulqa.yaml", "icm_gsm8k.yaml", "icm_alpaca.yaml", "icm_facts.yaml"} <= names


def test_pth_line_makes_stock_task_manager_find_the_tasks(tmp_path):
    # site.addsitedir processes a folder's .pth files exactly as interpreter start does for site-packages
    shutil.copy(PTH, tmp_path / PTH.name)
    out = _python(
        "import site, sys\n"
        f"site.addsitedir({str(tmp_path)!r})\n"
        "assert 'lm_eval' not in sys.modules\n"
        "from lm_eval.tasks import TaskManager\n"
        "tm = TaskManager()\n"
        "print(sorted(t for t in tm.all_tasks if t.startswith('icm')))\n"
        "print(len(tm.all_tasks) > 1000)\n"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert ("['icm', 'icm_alpaca', 'icm_claims', 'icm_comparisons', 'icm_facts', 'icm_gsm8k', 'icm_truthfulqa']"
            in out.stdout)  # the built-in task files; claims and comparisons read the user's records
    assert "True" in out.stdout  # lm-eval's own tasks are still there


def test_pth_line_is_harmless_without_the_package(tmp_path):
    shutil.copy(PTH, tmp_path / PTH.name)
    out = subprocess.run([sys.executable, "-S", "-c", f"import site; site.addsitedir({str(tmp_path)!r}); print('ok')"],
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    # -S: no site-packages, so icm_plugin is not importable (unless the checkout is the cwd, which it is not)
    assert out.returncode == 0 and out.stdout.strip() == "ok" and not out.stderr, out.stderr


def test_startup_hook_is_import_light():
    out = _python(
        "import sys, icm_plugin.core.discovery as d\n"
        "d.install()\n"
        "print(sorted(m for m in ('torch', 'datasets', 'lm_eval', 'transformers', 'numpy') if m in sys.modules))\n"
    )
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_lm_eval_ends_with_our_message_alone_when_the_hub_is_offline(tiny_model_dir, tmp_path):
    from lmeval_helpers import run_lm_eval

    done = run_lm_eval(["--model", "hf", "--model_args", f"pretrained={tiny_model_dir}", "--tasks", "icm_alpaca",
                        "--limit", "2", "--device", "cpu"], env={"ICM_DATA_DIR": ""}, cwd=tmp_path, timeout=600)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lm_eval: error: icm_alpaca: could not load the public dataset")
    assert "ICM_DATA_DIR=DIR" in last


def test_the_message_hook_leaves_other_errors_alone(monkeypatch, capsys):
    from icm_plugin.errors import ICMError

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: seen.append(exc[0]))
    discovery.install_excepthook()
    sys.excepthook(ValueError, ValueError("a bug"), None)
    assert seen == [ValueError]  # passed on to the previous hook, traceback and all
    sys.excepthook(ICMError, ICMError("data.jsonl: line 3: bad"), None)
    assert seen == [ValueError] and capsys.readouterr().err == "lm_eval: error: data.jsonl: line 3: bad\n"
