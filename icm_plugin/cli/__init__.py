"""The ``icm`` command (docs/cli.md): ``main`` (the entry point, ``icm = icm_plugin.cli.main:main``) and
``bench_cli`` (``icm train``, ``icm bench``); the integrations add theirs from their own ``cli`` modules."""
