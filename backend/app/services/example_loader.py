"""Load the bundled example datasets into an empty store (``AXIS_LOAD_EXAMPLES``, used by ``make run``)."""

from __future__ import annotations

import logging
from collections.abc import Collection

from app.config import Settings
from app.services import data_processor, human_signals_service, monitoring_service
from app.services.duckdb_store import DuckDBStore

logger = logging.getLogger(__name__)

LOAD_EXAMPLES_TASK = "load-examples"

# Loaded oldest first, so the "latest dataset of a kind" is the richest example of that kind.
EVAL_EXAMPLES = ("annotation", "model", "comparison")
MONITORING_EXAMPLES = ("monitoring", "monitoring_long")
HUMAN_SIGNALS_EXAMPLES = ("hitl",)


async def load_examples_if_empty(store: DuckDBStore, settings: Settings, skip_kinds: Collection[str] = ()) -> list[str]:
    """Load every example dataset when the registry is empty; return the new dataset ids.

    A store that already holds datasets (a restart, or real data) is left untouched. Kinds in
    ``skip_kinds`` (those a startup sync is loading) get no examples: landing after the sync, an
    example would become the default dataset of its kind in place of the synced data.
    """
    if await store.list_datasets():
        logger.info("Store already holds datasets; example data not loaded")
        return []
    loaded: list[str] = []
    if "eval" not in skip_kinds:
        for name in EVAL_EXAMPLES:
            res = await data_processor.load_example(store, name, sample_dir=settings.axis_sample_dir, row_cap=0)
            loaded.append(res.dataset_id)
    if "monitoring" not in skip_kinds:
        for name in MONITORING_EXAMPLES:
            mon = await monitoring_service.load_monitoring_example(store, settings, name)
            loaded.append(mon.dataset_id)
    if "human_signals" not in skip_kinds:
        for name in HUMAN_SIGNALS_EXAMPLES:
            hitl = await human_signals_service.load_human_signals_example(store, settings, name)
            if hitl.dataset_id is not None:
                loaded.append(hitl.dataset_id)
    skipped = f" (none of kind {', '.join(sorted(skip_kinds))}: a startup sync loads them)" if skip_kinds else ""
    logger.info("Loaded %d example datasets into the store%s", len(loaded), skipped)
    return loaded
