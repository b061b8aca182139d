"""Run by test_hostile_input.py in a fresh process: posts each file of a folder as a dataset upload to an
API app in this process and prints, as JSON, each answer's status and how far memory rose while it was made.

A fresh process, because a high-water mark already raised by earlier tests hides any growth below it; and
each request is measured from its own start, twice: the resident set's high-water mark (VmHWM, reset through
/proc/self/clear_refs) counts every page touched, native allocations too; tracemalloc's peak counts Python's
and numpy's allocations even untouched (np.zeros of a huge shape costs no resident memory until written).
Settings come from the environment, the bearer token from NNFORGE_TEST_TOKEN.
"""

import json
import os
import sys
import tracemalloc
from pathlib import Path

from fastapi.testclient import TestClient

from app.api.main import create_app
from app.core.settings import Settings


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def main(folder: Path) -> None:
    uploads = sorted(folder.iterdir())
    with TestClient(create_app(Settings())) as client:
        client.headers["Authorization"] = f"Bearer {os.environ['NNFORGE_TEST_TOKEN']}"

        def post(path: Path, data: bytes) -> int:
            return client.post("/v1/datasets", files={"file": (path.name, data)}).status_code

        for path in uploads:  # once unmeasured: lazy imports and first-call caches are not the upload's cost
            post(path, path.read_bytes())
        tracemalloc.start()
        figures = {}
        for path in uploads:
            data = path.read_bytes()
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux 4.0 and later)
            tracemalloc.reset_peak()
            rss, (traced, _) = _kib("VmRSS"), tracemalloc.get_traced_memory()
            status = post(path, data)
            figures[path.name] = {
                "status": status,
                "resident_mib": (_kib("VmHWM") - rss) / 1024,
                "allocated_mib": (tracemalloc.get_traced_memory()[1] - traced) / 2**20,
            }
    print(json.dumps(figures))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
