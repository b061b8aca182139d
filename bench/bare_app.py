"""The baseline of bench.api_load: a bare FastAPI endpoint, served by uvicorn exactly as the API is."""

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/bare")
    async def bare() -> dict[str, str]:
        return {"status": "ok"}

    return app
