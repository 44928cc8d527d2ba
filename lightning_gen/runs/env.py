"""Every environment variable that ``lightning_gen`` sets or reads for itself, named once.

A launching process passes its decisions to the processes it starts (DDP ranks, sweep trials)
through these; users set :data:`CACHE_DIR` and :data:`COMMIT` themselves.
"""

from __future__ import annotations

#: prefix of config values given as environment variables (``LIGHTNING_GEN_TRAINER__MAX_EPOCHS``)
PREFIX = "LIGHTNING_GEN"
#: the run id chosen by the launching process, so every DDP rank writes one run dir
RUN_ID = f"{PREFIX}_RUN_ID"
#: the evaluation sub-run chosen by the launching process, so every DDP rank writes one folder
EVAL_DIR = f"{PREFIX}_EVAL_DIR"
#: the Optuna trial a ``lightning-gen sweep`` worker runs (JSON: storage, study, trial id, metric)
OPTUNA_TRIAL = f"{PREFIX}_OPTUNA_TRIAL"
#: where feature extractors and their reference statistics are cached (default ``~/.cache/lightning_gen``)
CACHE_DIR = f"{PREFIX}_CACHE_DIR"
#: the commit of a copy of the tree without ``.git`` (``scripts/reproduce.py``)
COMMIT = f"{PREFIX}_COMMIT"
