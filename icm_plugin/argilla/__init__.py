"""ICM as a labelling source in Argilla: push a run for review, pull the human answers back, re-run.

    stack.py       `icm argilla up|status|down`: a local Argilla (its own venv, Redis, osmem, worker)
    server_main.py runs inside the server's venv: script-less search engine + argilla-server's CLI
    client.py      one `argilla.Argilla` client per command (retries via httpx-retries), errors -> ICMError
    schema.py      a task's prompt as Argilla settings (fields, LabelQuestion, metadata)
    run_folder.py  reads the run folder `icm label` writes
    push.py        run -> review dataset + NAME-conflicts dataset (idempotent upserts)
    pull.py        submitted responses -> {id, label} jsonl for `icm label --clamp`
    source.py      an existing dataset as the pool, and ICM's labels written back as suggestions
    cli.py         the argparse commands and the `icm label` hooks (load_pool, after_label)

The Argilla SDK (2.8) does all talking to the server; nothing here keeps a global client.
"""
