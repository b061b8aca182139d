"""Lineage on the client side: `--from JOB[:best|latest|ID]` as an `init_from` mapping, and a lineage
(GET /v1/jobs/{id}/lineage) drawn as a tree, the chain of ancestors above the job, its descendants below."""

import json
from typing import Any


def parse_from(text: str) -> dict[str, Any]:
    """`1d44`, `1d44:latest`, `1d44:17` → init_from's `job` and `checkpoint` (the rest left to defaults)."""
    job, _, checkpoint = text.partition(":")
    init: dict[str, Any] = {"job": job}
    if checkpoint:
        init["checkpoint"] = int(checkpoint) if checkpoint.isdigit() else checkpoint
    return init


def from_overrides(text: str) -> list[str]:
    """`--from` as `--set` overrides, so the spec file's own init_from (load, freeze, …) stays and the
    whole is validated as one; the job is quoted, since an all-digit prefix would read as a number."""
    return [f"init_from.{key}={json.dumps(value)}" for key, value in parse_from(text).items()]


def _label(job: dict[str, Any], marked: bool) -> str:
    text = f"{job['id'][:8]}  {job['arch']}  {job['status']}" + (f"  {job['name']}" if job["name"] else "")
    parent = job.get("parent")
    if parent:
        text += f"  (checkpoint {parent['checkpoint_id']}, load {parent['load']}, freeze {parent['freeze']})"
    return text + ("  ◀" if marked else "")


def tree_lines(lineage: dict[str, Any]) -> list[str]:
    """The lineage as text: the oldest ancestor first, each child indented under its parent; ◀ marks the
    job asked about."""
    me = lineage["job"]
    jobs = [*reversed(lineage["ancestors"]), me, *lineage["descendants"]]
    children: dict[str, list[dict[str, Any]]] = {}
    for job in jobs[1:]:
        if job.get("parent"):
            children.setdefault(job["parent"]["job_id"], []).append(job)
    lines: list[str] = []

    def draw(job: dict[str, Any], prefix: str, branch: str) -> None:
        lines.append(prefix + branch + _label(job, job["id"] == me["id"]))
        below = children.get(job["id"], [])
        inner = prefix + ("   " if branch == "└─ " else "│  " if branch else "")
        for index, child in enumerate(below):
            draw(child, inner, "└─ " if index == len(below) - 1 else "├─ ")

    draw(jobs[0], "", "")
    if lineage["truncated"]:
        lines.append("… more jobs than one lineage read returns (MAX_LINEAGE_JOBS)")
    return lines
