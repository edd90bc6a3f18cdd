"""tapeflow as a user's project gets it: a wheel built from this tree, in a fresh venv.

The venv is made by the standard `venv` module (no system site packages, so nothing of the
test venv leaks in), and the wheel is installed into it with `--no-deps`. Its dependencies
are not fetched from PyPI (slow, and offline runs must pass): the venv sees, through one
`.pth` line, a directory of links to exactly the distributions `tapeflow[postgres]`
declares, transitively, taken from the test venv. So a file missing from the wheel, a
dependency not declared, or a typing marker not shipped fails here as it would for a user.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.snippets import ROOT, files

EXTRAS = {"postgres"}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    home: Path  # an empty directory outside the source tree, where user programs run


def run(*command: str | Path, cwd: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TAPEFLOW_", "PYTHON"))}
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        declared = email.message_from_bytes(archive.read(name))
    return declared.get_all("Requires-Dist") or []


def link_dependencies(declared: list[str], extras: set[str], into: Path) -> None:
    """Link into `into` every distribution that `declared` needs, from this interpreter."""
    into.mkdir()
    todo = [(Requirement(line), extras) for line in declared]
    seen: set[str] = set()
    while todo:
        requirement, active = todo.pop()
        wanted = requirement.marker is None or any(
            requirement.marker.evaluate({"extra": extra}) for extra in active | {""}
        )
        name = canonicalize_name(requirement.name)
        if not wanted or name in seen:
            continue
        seen.add(name)
        dist = metadata.distribution(name)
        for top in {path.parts[0] for path in dist.files or []}:
            if top != ".." and not top.endswith(".pth") and not (into / top).exists():
                (into / top).symlink_to(Path(str(dist.locate_file(top))))
        todo += [(Requirement(line), set(requirement.extras)) for line in dist.requires or []]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("packaging")
    dist = work / "dist"
    # --no-build-isolation: hatchling comes from the test extra, so the build works offline.
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check")
    run(*pip, "wheel", ROOT, "--no-deps", "--no-build-isolation", "-q", "-w", dist, cwd=work)
    (wheel,) = dist.glob("tapeflow-*.whl")
    venv.create(work / "venv", with_pip=False)
    python = work / "venv" / "bin" / "python"
    run(*pip, "--python", python, "install", "--no-deps", "-q", wheel, cwd=work)
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=work)
    link_dependencies(requirements(wheel), EXTRAS, work / "deps")
    (Path(purelib.strip()) / "tapeflow_test_deps.pth").write_text(f"{work / 'deps'}\n")
    home = work / "home"
    home.mkdir()
    return Installed(wheel, python, home)


def test_the_wheel_holds_every_file_of_the_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
    src = ROOT / "src"
    package = {
        path.relative_to(src).as_posix()
        for path in (src / "tapeflow").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert package - names == set()
    assert {"tapeflow/py.typed", "tapeflow/backends/postgres/functions.sql"} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_the_installed_package_runs_the_demo_outside_the_source_tree(
    installed: Installed,
) -> None:
    where = run(
        installed.python,
        "-c",
        "import tapeflow; print(tapeflow.__file__); print(tapeflow.__version__)",
        cwd=installed.home,
    ).split()
    assert Path(where[0]).is_relative_to(installed.python.parents[1])
    assert installed.wheel.name.startswith(f"tapeflow-{where[1]}-")

    demo = installed.home / "demo"
    shutil.copytree(ROOT / "examples" / "subscription_with_debug", demo)
    args = ["--cycles", "2", "--duration", "0.1", "--failure-rate", "0"]
    out = run(installed.python, demo / "demo.py", *args, cwd=installed.home)
    assert out.rstrip().endswith("result: paid=103 overdue=0")


def test_the_wheel_installs_the_tapeflow_command(installed: Installed) -> None:
    """The console script runs from the venv's bin, its dependencies (Typer, rich) found."""
    command = installed.python.with_name("tapeflow")
    url = "--url=sqlite:///fresh.db"
    status = json.loads(run(command, "db", "status", "--json", url, cwd=installed.home))
    assert status["current"] == 0
    assert "tapeflow worker billing" in run(command, "--help", cwd=installed.home)


def test_user_code_type_checks_against_the_installed_package(installed: Installed) -> None:
    """The README's quickstart files pass `mypy --strict` with tapeflow found as installed:
    without `py.typed`, mypy would call every decorator untyped."""
    quickstart = files(ROOT / "README.md")
    for name in ("billing.py", "worker.py", "client.py"):
        (installed.home / name).write_text(quickstart[name], encoding="utf-8")
    run(
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--config-file=",  # not this project's configuration: no mypy_path=src
        f"--python-executable={installed.python}",
        f"--cache-dir={installed.home / '.mypy_cache'}",
        "billing.py",
        "worker.py",
        "client.py",
        cwd=installed.home,
    )


@pytest.mark.parametrize("implementation", ["binary", "python"])
def test_the_installed_postgres_backend_reads_its_sql(
    installed: Installed, postgres_url: str, implementation: str
) -> None:
    """`tapeflow[postgres]` brings psycopg's binary build; PSYCOPG_IMPL=python is what an
    application that installs `psycopg[pool]` itself gets: the system's libpq."""
    program = (
        "import asyncio, psycopg, sys, tapeflow\n"
        "async def main():\n"
        "    async with tapeflow.connect(sys.argv[1]):\n"
        "        print(psycopg.pq.__impl__)\n"
        "asyncio.run(main())\n"
    )
    out = run(
        installed.python,
        "-c",
        program,
        postgres_url,
        cwd=installed.home,
        PSYCOPG_IMPL=implementation,
    )
    assert out.strip() == implementation


def test_tapeflow_logs_nothing_until_the_application_configures_logging() -> None:
    warn = "import logging, tapeflow; logging.getLogger('tapeflow.worker').warning('lease lost')"
    silent = subprocess.run([sys.executable, "-c", warn], capture_output=True, text=True)
    assert silent.returncode == 0
    assert silent.stderr == ""
    shown = subprocess.run(
        [sys.executable, "-c", f"import logging; logging.basicConfig(); {warn}"],
        capture_output=True,
        text=True,
    )
    assert "WARNING:tapeflow.worker:lease lost" in shown.stderr
