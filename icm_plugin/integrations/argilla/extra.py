"""The argilla extra: what only ``pip install "icm-plugin[argilla]"`` installs, and one error when it is missing."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

from icm_plugin.errors import ICMError

# what the Argilla commands import that only the "argilla" extra installs
EXTRA_MODULES = ("argilla", "httpx", "httpx_retries")
INSTALL_EXTRA = 'pip install "icm-plugin[argilla]"'


def _extra_error(missing: str) -> ICMError:
    return ICMError(f"the Argilla commands need the argilla extra, which is not installed (no module named "
                    f"{missing!r}): {INSTALL_EXTRA} (from a checkout: pip install -e \".[argilla]\")")


@contextmanager
def needs_extra() -> Iterator[None]:
    """Run the block only with the argilla extra installed; a missing package of it (checked up front, and
    any that an import inside the block misses) becomes one ICMError naming ``pip install "icm-plugin[argilla]"``."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise _extra_error(missing[0])
    try:
        yield
    except ModuleNotFoundError as err:
        if not err.name or err.name.split(".")[0] == "icm_plugin":
            raise
        raise _extra_error(err.name) from None
