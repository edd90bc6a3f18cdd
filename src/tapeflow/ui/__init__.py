"""The web UI (``tapeflow ui``): workflows, their timelines and variables, and actions on
them, server-rendered. Needs the ``ui`` extra (``pip install 'tapeflow[ui]'``)."""

try:
    from tapeflow.ui._app import app, serve
except ImportError as exc:  # pragma: no cover - depends on the environment
    if exc.name not in ("starlette", "jinja2", "uvicorn", "multipart", "python_multipart"):
        raise
    raise ImportError(
        f"the tapeflow UI needs its extra: pip install 'tapeflow[ui]' ({exc})", name=exc.name
    ) from None

__all__ = ["app", "serve"]
