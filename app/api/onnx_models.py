"""The ONNX Runtime sessions predict runs on, one per checkpoint. Torch never loads in the API process: a
checkpoint is exported once, in a child forked from the API's fork server (app/core/child_process.py, within
PREDICT_EXPORT_TIMEOUT_SECONDS and PREDICT_EXPORT_MEMORY_BYTES, one at a time per API process; the others
wait without holding a thread), into NNFORGE_HOME/onnx/<sha256>.v1.onnx. Files are named by the checkpoint's
content, so the cache survives restarts and serves every API process of a host; beyond
PREDICT_ONNX_CACHE_BYTES the least recently used go. In memory, each API process keeps the sessions of its
PREDICT_SESSION_CACHE most recently used checkpoints."""

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any, Literal

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.api.exports import check_onnx_export
from app.core import child_process
from models.onnx_meta import OnnxMeta

child_process.preload("app.api.onnx_export_child")

FILE_VERSION = 1  # of the file's contents (its metadata included): a new version exports every model again
Kind = Literal["classifier", "regression", "generator"]


class ExportFailed(RuntimeError):
    """The child process could not export the checkpoint (or took too long)."""


@dataclass
class ServedModel:
    session: Any  # onnxruntime.InferenceSession; onnxruntime loads on the first predict
    meta: OnnxMeta
    seconds_per_sample: float = float("inf")  # of the latest run; unknown until the first

    def expected_seconds(self, samples: int) -> float:
        return self.seconds_per_sample * samples

    @property
    def kind(self) -> Kind:
        if self.meta.generative:
            return "generator"
        return "classifier" if self.meta.info.task == "classification" else "regression"

    def run(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out: np.ndarray = self.session.run(None, {"input": x})[0]
        self.seconds_per_sample = (time.perf_counter() - start) / len(x)
        return out


class OnnxModels:
    def __init__(
        self, folder: Path, *, sessions: int, disk_bytes: int, export_timeout: float, export_memory: int
    ) -> None:
        self.folder, self.max_sessions, self.disk_bytes = folder, sessions, disk_bytes
        self.export_timeout, self.export_memory = export_timeout, export_memory
        self.sessions: OrderedDict[str, ServedModel] = OrderedDict()  # by sha256, least recently used first
        self.lock = Lock()  # the sessions are looked up and added from worker threads
        self.exports: dict[str, asyncio.Future[None]] = {}  # in flight, by sha256 (the event loop's only)
        self.export_slot = asyncio.Semaphore(1)

    def cached(self, sha256: str) -> ServedModel | None:
        with self.lock:
            served = self.sessions.get(sha256)
            if served is not None:
                self.sessions.move_to_end(sha256)
            return served

    async def get(self, sha256: str, checkpoint_bytes: Callable[[], bytes]) -> ServedModel:
        """The checkpoint's session, exported first if no API process of this host has done it yet.
        `checkpoint_bytes` reads the (verified) checkpoint, called only for an export."""
        served = self.cached(sha256)
        if served is not None:
            return served
        return await run_in_threadpool(self._load, sha256, await self.onnx_bytes(sha256, checkpoint_bytes))

    async def onnx_bytes(self, sha256: str, checkpoint_bytes: Callable[[], bytes]) -> bytes:
        """The checkpoint's ONNX file (what `?format=onnx` downloads too), exported first if need be."""
        path = self.folder / f"{sha256}.v{FILE_VERSION}.onnx"
        for _ in range(2):  # another process may prune the file between the export and its reading
            if not path.exists():
                await self._export_once(sha256, path, checkpoint_bytes)
            try:
                return await run_in_threadpool(_read_and_touch, path)
            except FileNotFoundError:
                continue
        raise ExportFailed(f"the ONNX file of checkpoint {sha256[:12]} was removed as it was written")

    async def _export_once(self, sha256: str, path: Path, checkpoint_bytes: Callable[[], bytes]) -> None:
        """Requests for the same checkpoint share one export; a request that goes away leaves it running
        for the others (shield)."""
        pending = self.exports.get(sha256)
        if pending is None:
            pending = asyncio.ensure_future(self._export(path, checkpoint_bytes))
            self.exports[sha256] = pending
            pending.add_done_callback(lambda _: self.exports.pop(sha256, None))
        await asyncio.shield(pending)

    async def _export(self, path: Path, checkpoint_bytes: Callable[[], bytes]) -> None:
        async with self.export_slot:
            if path.exists():  # another API process of this host exported it meanwhile
                return
            check_onnx_export()
            data = await run_in_threadpool(checkpoint_bytes)
            try:
                onnx = await run_in_threadpool(
                    child_process.call,
                    "app.api.onnx_export_child:export",
                    data,
                    memory_bytes=self.export_memory,
                    timeout_seconds=self.export_timeout,
                )
            except child_process.ChildFailed as failure:
                raise ExportFailed(self._reason(failure)) from None
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            partial.write_bytes(onnx)
            partial.replace(path)  # a reader never sees half a file
        await run_in_threadpool(prune, self.folder, self.disk_bytes, path, self.export_timeout)

    def _reason(self, failure: child_process.ChildFailed) -> str:
        limit = {
            "timeout": f"took longer than PREDICT_EXPORT_TIMEOUT_SECONDS ({self.export_timeout:g} s)",
            "memory": f"needed more than PREDICT_EXPORT_MEMORY_BYTES ({self.export_memory:,} bytes)",
        }
        return f"the ONNX export {limit.get(failure.kind, f'failed: {failure}')}"

    def _load(self, sha256: str, onnx: bytes) -> ServedModel:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread per run: requests already run side by side, and idle pool threads spinning for work
        # would take the cores the API and the database answer with.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        served = ServedModel(session, OnnxMeta.from_metadata(session.get_modelmeta().custom_metadata_map))
        with self.lock:
            self.sessions[sha256] = served
            self.sessions.move_to_end(sha256)
            while len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        return served


def _read_and_touch(path: Path) -> bytes:
    data = path.read_bytes()
    os.utime(path)  # used now: the disk cache keeps it over older files
    return data


def prune(folder: Path, limit_bytes: int, keep: Path, stale_seconds: float) -> None:
    """Delete the least recently used ONNX files until they fit in `limit_bytes` (`keep`, just written,
    stays even if it alone is larger), and partial files older than an export may take (a killed API's)."""
    entries = []
    for path in folder.iterdir():
        try:
            stat = path.stat()
        except FileNotFoundError:  # another process pruned it
            continue
        if path.name.endswith(".partial"):
            if stat.st_mtime < time.time() - stale_seconds:
                path.unlink(missing_ok=True)
        elif path.suffix == ".onnx":
            entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit_bytes:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            total -= size
