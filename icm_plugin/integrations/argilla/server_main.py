"""Entry point run by the Argilla server's own interpreter (its venv), never imported by the ICM package.

osmem-server (the in-memory OpenSearch used by the local stack) rejects scripted updates, which
argilla-server uses when a response is submitted or a suggestion deleted. This file registers an
OpenSearch engine that does those three updates by read-modify-write, then runs argilla-server's CLI
(`start`, `worker`, `database ...`, `search-engine reindex`) so every process uses the same engine.

Usage: VENV/bin/python server_main.py ARGILLA_SERVER_CLI_ARGS...  with ARGILLA_SEARCH_ENGINE=osmem.
`prepare` (added here) migrates the database, creates the default user from ICM_ARGILLA_API_KEY /
ICM_ARGILLA_PASSWORD (environment, so they never show in a process list) and rebuilds the search index
from the database, in one interpreter start instead of three.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os

from argilla_server.search_engine import SearchEngine
from argilla_server.search_engine.commons import es_index_name_for_dataset
from argilla_server.search_engine.opensearch import OpenSearchEngine

ENGINE_NAME = "osmem"


@SearchEngine.register(engine_name=ENGINE_NAME)
@dataclasses.dataclass
class ScriptlessOpenSearchEngine(OpenSearchEngine):
    """OpenSearchEngine whose partial updates rewrite the whole document instead of running a script."""

    async def _rewrite(self, index_name: str, record_id: str, change) -> None:
        doc = await self.client.get(index=index_name, id=record_id)
        source = doc["_source"]
        change(source)
        await self.client.index(index=index_name, id=record_id, body=source, refresh=True)

    async def update_record_response(self, response) -> None:
        es_response = self._map_record_response_to_es(response)

        def change(source: dict) -> None:
            kept = [r for r in source.get("responses") or [] if str(r.get("id")) != str(response.id)]
            source["responses"] = [*kept, es_response]

        record = response.record
        await self._rewrite(es_index_name_for_dataset(record.dataset), str(record.id), change)

    async def delete_record_response(self, response) -> None:
        def change(source: dict) -> None:
            source["responses"] = [r for r in source.get("responses") or [] if str(r.get("id")) != str(response.id)]

        record = response.record
        await self._rewrite(es_index_name_for_dataset(record.dataset), str(record.id), change)

    async def delete_record_suggestion(self, suggestion) -> None:
        def change(source: dict) -> None:
            (source.get("suggestions") or {}).pop(suggestion.question.name, None)

        index_name = es_index_name_for_dataset(suggestion.record.dataset)
        await self._rewrite(index_name, str(suggestion.record_id), change)


def prepare() -> None:
    """Migrate the SQLite database, create the owner user once, re-index every dataset into the engine."""
    from argilla_server.cli.database.migrate import migrate_db
    from argilla_server.cli.database.users.create_default import _create_default
    from argilla_server.cli.search_engine.reindex import _reindex

    migrate_db(revision="head")
    asyncio.run(_create_default(os.environ["ICM_ARGILLA_API_KEY"], os.environ["ICM_ARGILLA_PASSWORD"], quiet=True))
    # the engine is in-memory and starts empty: the database is the source of truth
    asyncio.run(_reindex())


if __name__ == "__main__":
    from argilla_server.cli import app

    app.command(name="prepare", help="migrate, create the default user, reindex")(prepare)
    app(prog_name="argilla_server")
