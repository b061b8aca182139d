"""The training process: one per job, started by the task, never forked from a process that touched CUDA.

    python -m workers.trainer JOB_ID LEASE_TOKEN
"""

import logging
import sys

from app.db.engine import make_engine, make_session_factory
from app.settings import get_settings
from workers.job_store import JobStore
from workers.runner import run_claimed


def main(job_id: str, token: str) -> int:
    import torch

    settings = get_settings()
    torch.set_num_threads(settings.torch_threads)
    engine = make_engine(settings.resolved_database_url)
    store = JobStore(make_session_factory(engine), job_id, token)
    claimed = store.claim()
    if claimed is None:
        logging.getLogger("nnforge.worker").info("job %s is not queued; nothing to do", job_id)
        return 0
    run_claimed(store, claimed, settings.heartbeat_seconds)
    engine.dispose()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(main(sys.argv[1], sys.argv[2]))
