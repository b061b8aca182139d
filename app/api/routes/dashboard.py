"""The dashboard: server-rendered page shells (Jinja2) whose scripts read the API with the user's token.

The pages carry no data, so they need no auth: every number on them comes from /v1 with the token the
browser keeps in localStorage. Live curves read /v1/jobs/{id}/events with fetch(), which, unlike
EventSource, can send the Authorization header, so no token ever appears in a URL or an access log.
"""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).resolve().parents[2]
templates = Jinja2Templates(directory=HERE / "templates")
static_files = StaticFiles(directory=HERE / "static")
router = APIRouter(include_in_schema=False)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "jobs.html", {"page": "jobs"})


@router.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "job.html", {"page": "job", "job_id": job_id})


@router.get("/ui/compare", response_class=HTMLResponse)
def compare_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "compare.html", {"page": "compare"})


@router.get("/ui/submit", response_class=HTMLResponse)
def submit_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "submit.html", {"page": "submit"})


@router.get("/ui/sweeps", response_class=HTMLResponse)
def sweeps_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "sweeps.html", {"page": "sweeps"})


@router.get("/ui/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "sweep.html", {"page": "sweep", "sweep_id": sweep_id})
