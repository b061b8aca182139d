"""Builds the FastAPI application. Imports no torch: routes that need it load it on first use."""

import gc

from fastapi import FastAPI

from app.api.job_reads import RecentJobReads
from app.api.onnx_models import OnnxModels
from app.api.predict import RecentLookups
from app.api.problems import install_problem_handlers, problem_responses
from app.api.routes import (
    catalog,
    checkpoints,
    dashboard,
    datasets,
    evaluations,
    events,
    health,
    jobs,
    logs,
    metrics,
    predict,
    samples,
    sweeps,
    usage,
)
from app.api.tokens import OwnerCache
from app.core import child_process
from app.core.body_limit import BodyLimitMiddleware
from app.core.observability import install_metrics
from app.core.queue import ensure_broker_folders, make_celery
from app.core.rate_limit import RateLimiter
from app.core.request_id import RequestIdMiddleware, configure_logging
from app.core.settings import Settings, get_settings
from app.db.engine import make_engine, make_session_factory


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="nnforge",
        version="0.1.0",
        description="Train the classic neural networks from a spec: submit, follow, download.",
    )
    app.state.settings = settings
    settings.nnforge_home.mkdir(parents=True, exist_ok=True)
    # No pre-ping: it is a round trip per request; after a database restart the first statement on a stale
    # connection fails (503) and SQLAlchemy discards the pool's older connections.
    app.state.engine = make_engine(settings.resolved_database_url, pre_ping=False)
    app.state.session_factory = make_session_factory(app.state.engine)
    ensure_broker_folders(settings)
    child_process.warm_up()  # the dry runs' and upload checks' fork server, torch in it, not in this process
    app.state.celery = make_celery(settings)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    app.state.unauthenticated_limiter = RateLimiter(
        settings.unauthenticated_rate_limit_per_second, settings.unauthenticated_rate_limit_burst
    )
    app.state.token_owners = OwnerCache(settings.token_cache_seconds)
    app.state.job_reads = RecentJobReads(settings.status_cache_seconds)
    app.state.onnx_models = OnnxModels(
        settings.nnforge_home / "onnx",
        sessions=settings.predict_session_cache,
        disk_bytes=settings.predict_onnx_cache_bytes,
        export_timeout=settings.predict_export_timeout_seconds,
        export_memory=settings.predict_export_memory_bytes,
    )
    app.state.predict_lookups = RecentLookups(settings.status_cache_seconds)
    install_problem_handlers(app)
    for module in (jobs, metrics, events, logs, samples, checkpoints, predict, datasets, catalog, usage):
        app.include_router(module.router, responses=problem_responses(400, 401, 404, 409, 413, 422, 429, 503))
    app.include_router(sweeps.router, responses=problem_responses(400, 401, 404, 409, 413, 422, 429, 503))
    app.include_router(
        evaluations.router, responses=problem_responses(400, 401, 404, 409, 413, 422, 429, 503)
    )
    for module in (health, dashboard):
        app.include_router(module.router)
    app.mount("/static", dashboard.static_files, name="static")
    install_metrics(app, app.state.session_factory)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(BodyLimitMiddleware)  # outermost: nothing reads a body past its cap
    configure_logging()
    # The collector's passes stall every request in flight and set the API's p99 under load
    # (bench.api_load: p99/p50 about 4 → 2). What is built so far lives as long as the process, so it leaves
    # the collector's view; young objects are collected in larger, rarer batches.
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    return app
