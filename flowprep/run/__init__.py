"""A run of ``flowprep extract``: options, one video through the stages, the runners.

    extract.py    the entry point (flowprep.extract and the CLI call it): options,
                  store config, the run lock, the skip list, the annotation lists
    pipeline.py   one video: decode -> flow -> quantize -> store (process_video)
    local.py      the local runner: supervised worker processes
    dask.py       the dask.distributed runner

Import order, lowest first: pipeline <- local, dask <- extract (docs/code_map.md).
"""
