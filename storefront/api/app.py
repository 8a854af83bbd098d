"""The FastAPI application factory (OpenAPI at /docs)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import timedelta

from fastapi import FastAPI

from identity import kernels
from storefront.api.errors import install_error_handlers
from storefront.api.routers import auth as auth_router
from storefront.api.routers import catalogue, gates, sessions, shoppers, staff_privacy
from storefront.api.routers import entry_code as entry_code_router
from storefront.api.routers import me as me_router
from storefront.api.routers import receipts as receipts_router
from storefront.api.routers import staff as staff_router
from storefront.bootstrap import Container, bootstrap
from storefront.payments.stuck_exits import finish_stuck_exits
from storefront.privacy.scheduler import PeriodicTask, start_retention_sweeps
from storefront.privacy.wiring import build_privacy
from storefront.security import routes as security_routes
from storefront.security.devices_http import SignedBodyMiddleware
from storefront.security.headers import SecurityHeadersMiddleware
from storefront.settings import Settings
from storefront.web import install_web


def create_app(container: Container | None = None, settings: Settings | None = None) -> FastAPI:
    """Build the app around ``container``, or bootstrap one from ``settings`` at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = container is None
        app.state.container = container or bootstrap(settings)
        if owned:
            # The palm matcher's compiled loops, loaded or compiled now, not at the first
            # shopper's palm (0.2 s from numba's cache, 1.7 s without one).
            kernels.warm_up()
            # What start-up built (container, indexes, caches, imported modules) lives as
            # long as the process: frozen out of the cyclic collector, whose full passes
            # over it otherwise stalled every request in flight (~100-175 ms, measured
            # with benchmarks/bench_exit.py).
            gc.collect()
            gc.freeze()
        sweeps = _retention_sweeps(app) if owned else None
        finisher = _stuck_exit_runs(app.state.container) if owned else None
        try:
            yield
        finally:
            for task in (sweeps, finisher):
                if task is not None:
                    task.stop()
            if owned:
                gc.unfreeze()
                app.state.container.close()

    app = FastAPI(title="storefront", version="0.1.0", lifespan=lifespan,
                  description="Backend for checkout-free stores with palm identity.")
    if container is not None:
        app.state.container = container
    install_error_handlers(app)
    app.add_middleware(SignedBodyMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.include_router(security_routes.router)
    for module in (catalogue, shoppers, gates, sessions):
        app.include_router(module.router)
    app.include_router(staff_router.router)
    app.include_router(staff_privacy.router)
    app.include_router(receipts_router.router)
    app.include_router(auth_router.router)
    app.include_router(me_router.router)
    app.include_router(entry_code_router.router)
    install_web(app)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: the process is up and its container is built."""
        return {"status": "ok"}

    return app


def _stuck_exit_runs(c: Container) -> PeriodicTask:
    """Finish exits left ``exited`` (:mod:`storefront.payments.stuck_exits`) on a
    background thread: at once, then every ``stuck_exit_interval_s`` seconds (0: the
    first run only). The first run of the only process (``payment_reconcile_after_s``
    0) takes every exit, and gives back the leases taken before this process started."""
    s, started = c.settings, c.checkout.clock()
    alone = s.payment_reconcile_after_s == 0
    runs = 0

    def run() -> object:
        nonlocal runs
        first, runs = runs == 0, runs + 1
        if not first and s.stuck_exit_interval_s <= 0:
            return "off"
        report = finish_stuck_exits(
            checkout=c.checkout, db=c.db, store_id=s.store_id, clock=c.checkout.clock,
            older_than=timedelta(seconds=0 if first and alone else s.stuck_exit_after_s),
            lease=timedelta(seconds=s.exit_lease_s),
            claimed_before=started if first and alone else None)
        return {k: v for k, v in asdict(report).items() if k != "sessions"}

    every = s.stuck_exit_interval_s if s.stuck_exit_interval_s > 0 else 86_400.0
    return PeriodicTask(run, interval_s=every, first_delay_s=0, name="stuck-exits").start()


def _retention_sweeps(app: FastAPI) -> PeriodicTask | None:
    """Start the periodic retention sweep of a served app (settings
    ``retention_sweep_interval_s``, 0: off) over the app's privacy services."""
    c: Container = app.state.container
    privacy = getattr(app.state, "privacy", None) or build_privacy(c)
    app.state.privacy = privacy
    return start_retention_sweeps(c.engine, privacy.retention.sweep,
                                  interval_s=c.settings.retention_sweep_interval_s,
                                  first_delay_s=c.settings.retention_sweep_first_delay_s)
