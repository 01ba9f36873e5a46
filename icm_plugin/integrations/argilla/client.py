"""One `argilla.Argilla` client for a command, with retries, and the SDK's errors turned into ICMErrors.

Where the server is: `--api-url/--api-key`, else `ARGILLA_API_URL`/`ARGILLA_API_KEY`, else the local stack
of `icm argilla up` when it is running. The key is never written anywhere by this package.
Retries: httpx-retries' `RetryTransport` retries idempotent requests (GET, PUT: record upserts are PUTs)
on 429/5xx and on connections dropped mid-request, with exponential backoff (about 4 s in all). A refused
connection is retried only twice at once by httpx itself, so an unreachable server is reported at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import argilla as rg
import httpx
from argilla._exceptions import ArgillaAPIError, ArgillaCredentialsError, ArgillaError
from httpx_retries import Retry, RetryTransport

from icm_plugin.errors import ICMError

RETRY = Retry(
    total=4,
    backoff_factor=0.25,
    status_forcelist=[429, 500, 502, 503, 504],
    retry_on_exceptions=[httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout, httpx.ReadError,
                         httpx.WriteError, httpx.RemoteProtocolError],
)
TIMEOUT_S = 60


def _retrying_transport() -> RetryTransport:
    return RetryTransport(transport=httpx.HTTPTransport(retries=2), retry=RETRY)


def resolve_server(api_url: str | None = None, api_key: str | None = None, home: str | None = None) -> tuple[str, str]:
    """(url, key) from flags, then the environment, then a running local stack. Raises ICMError if none."""
    url = api_url or os.environ.get("ARGILLA_API_URL")
    key = api_key or os.environ.get("ARGILLA_API_KEY")
    if url and key:
        return url.rstrip("/"), key
    if url and not key:
        raise ICMError(f"no API key for {url}: pass --api-key or set ARGILLA_API_KEY (the key of your Argilla user)")
    from icm_plugin.integrations.argilla.stack import LocalStack

    info = LocalStack(home).status()
    if info is None or not all(info.running.values()):
        raise ICMError("no Argilla server: start the local one with `icm argilla up`, or pass --api-url/--api-key "
                       "(or set ARGILLA_API_URL/ARGILLA_API_KEY) for your own")
    return info.url, key or info.credentials.api_key


def connect(api_url: str | None = None, api_key: str | None = None, home: str | None = None) -> rg.Argilla:
    """A signed-in client. Raises ICMError when the server cannot be reached or rejects the key."""
    url, key = resolve_server(api_url, api_key, home)
    with argilla_errors(url):
        try:
            return rg.Argilla(api_url=url, api_key=key, timeout=TIMEOUT_S,
                              mounts={"all://": _retrying_transport()})
        except ArgillaCredentialsError:
            raise ICMError(f"Argilla at {url} rejected the API key; check --api-key / ARGILLA_API_KEY "
                           "(local stack: `icm argilla status` shows it)") from None


@contextmanager
def argilla_errors(url: str, doing: str = "") -> Iterator[None]:
    """Turn network and API failures inside the block into one ICMError naming the server and the step."""
    where = f"Argilla at {url}" + (f" ({doing})" if doing else "")
    try:
        yield
    except ICMError:
        raise
    except httpx.TransportError as err:
        raise ICMError(f"cannot reach {where}: {err.__class__.__name__}: {err}; is the server running? "
                       "(local stack: `icm argilla status` / `icm argilla up`)") from None
    except ArgillaAPIError as err:
        if err.status_code == 401:
            raise ICMError(f"{where} rejected the API key; check --api-key / ARGILLA_API_KEY") from None
        if err.status_code == 403:
            raise ICMError(f"{where}: this user may not do that (needs the owner or admin role): {err}") from None
        raise ICMError(f"{where} answered an error: {err}") from None
    except ArgillaError as err:
        raise ICMError(f"{where}: {err}") from None


def workspace_name(client: rg.Argilla, workspace: str | None) -> str:
    """The workspace to use: the named one (must exist), else the user's only or first one."""
    names = [w.name for w in client.workspaces]
    if workspace is not None:
        if workspace not in names:
            raise ICMError(f"workspace {workspace!r} does not exist on {client.api_url} (this user sees: "
                           f"{', '.join(names) or 'none'}); create it in Argilla or pass another --workspace")
        return workspace
    if not names:
        raise ICMError(f"the user has no workspace on {client.api_url}; create one in Argilla and pass --workspace")
    return names[0]


def find_dataset(client: rg.Argilla, name: str, workspace: str) -> rg.Dataset | None:
    """The dataset called ``name`` in ``workspace``, or None."""
    ws = client.workspaces(name=workspace)
    for ds in ws.datasets:
        if ds.name == name:
            return ds.get()  # with its settings
    return None
