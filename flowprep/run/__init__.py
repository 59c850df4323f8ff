"""A run of ``flowprep extract``: options, one video through the stages, the runners.

    options.py    the one source of the extract options (names, defaults, help, choices,
                  checks); ExtractOptions and the CLI's click options come from it
    presets.py    --preset tsn|i3d|denseflow: published setups as bundles of options
    extract.py    the entry point (flowprep.extract and the CLI call it): store config,
                  run lock, the skip list, a runner, failure records, annotation lists
    pipeline.py   one video: decode -> flow -> quantize -> store (process_video)
    ledger.py     what a video came to (VideoResult) and the rules every runner shares
    local.py      the local runner: supervised worker processes
    starter.py    how they start: forked from a fork server, or spawned
    dask.py       the dask.distributed runner
    faults.py     test-only fault injection (FLOWPREP_TEST_HOOK)

Import order, lowest first: presets <- options; ledger <- pipeline <- local, dask <-
extract (docs/code_map.md).
"""
