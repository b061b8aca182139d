"""Builds the FastAPI application. Imports no torch: routes that need it load it on first use."""

from fastapi import FastAPI

from app.api.problems import install_problem_handlers
from app.api.routes import catalog, checkpoints, datasets, health, jobs, metrics
from app.db.engine import make_engine, make_session_factory
from app.queue import ensure_broker_folders, make_celery
from app.rate_limit import RateLimiter
from app.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(title="nnforge", version="0.1.0",
                  description="Train the classic neural networks from a spec: submit, follow, download.")
    app.state.settings = settings
    settings.nnforge_home.mkdir(parents=True, exist_ok=True)
    app.state.engine = make_engine(settings.resolved_database_url)
    app.state.session_factory = make_session_factory(app.state.engine)
    ensure_broker_folders(settings)
    app.state.celery = make_celery(settings)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    install_problem_handlers(app)
    for module in (jobs, metrics, checkpoints, datasets, catalog, health):
        app.include_router(module.router)
    return app
