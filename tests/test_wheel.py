"""The package works from a wheel, outside the checkout.

The wheel is built from a copy of the source tree (an in-tree build would write build/ and *.egg-info into
the checkout, collide with concurrent runs, and let a stale build/lib leak deleted files into the wheel),
checked for its file list, then installed without -e into a fresh venv under tmp. That venv reuses the
pinned dependencies already installed in the test's own environment through a ``.pth`` file holding a
plain path line: the directory is appended to sys.path, but the ``.pth`` files inside it are not run, so the
editable-install finder of the checkout stays inactive and ``import vlalign`` can only find the wheel's
copy. The CLI then lists the encoders and runs a small sweep from a working directory outside the
checkout, with no PYTHONPATH and no path to the repository, and its results are read back with
``vlalign query``. Nothing is downloaded: the wheel is built and installed with --no-index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 600
# The sweep embeds a small COCO-format set (60 real emoji images) with mobilenetv2 on one worker.
SWEEP_TIMEOUT = 1200

# Files the installed package needs at run time (modules, SQL, the embedded data set, the default spec).
REQUIRED = {
    "vlalign/__init__.py",
    "vlalign/cli/main.py",
    "vlalign/flows/__init__.py",
    "vlalign/flows/sweep.py",
    "vlalign/flows/extract.py",
    "vlalign/flows/runtime.py",
    "vlalign/tasks/__init__.py",
    "vlalign/tasks/analysis.py",
    "vlalign/tasks/extract.py",
    "vlalign/sql/__init__.py",
    "vlalign/sql/views.sql",
    "vlalign/sql/pairs.sql",
    "vlalign/sql/splits.sql",
    "vlalign/data/__init__.py",
    "vlalign/data/README.md",
    "vlalign/data/emoji/images.parquet",
    "vlalign/data/emoji/captions.parquet",
    "vlalign/data/emoji/emoji.parquet",
    "vlalign/data/emoji/aliases.parquet",
    "vlalign/sweeps/default.yaml",
}
# ... and every module of the library's subpackages (a subpackage left out of pyproject's `packages` fails here)
REQUIRED |= {p.relative_to(REPO).as_posix() for p in (REPO / "vlalign").rglob("*.py")}

# Not copied into the build tree: environments, caches, build outputs, and the checkout's own lake (lake/ at its
# top only: vlalign/datalake is the library's lake package).
_PATTERNS = shutil.ignore_patterns(
    ".git", ".venv", "venv", ".prefect", "__pycache__", "*.pyc", "build", "dist", "*.egg-info",
    ".pytest_cache", "out", ".cache", "*.tmp",
)


def _IGNORE(folder: str, names: list[str]) -> set[str]:
    return _PATTERNS(folder, names) | ({"lake"} & set(names) if Path(folder) == REPO else set())


def _run(cmd: list[str], env: dict, cwd: Path, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(c) for c in cmd], env=env, cwd=str(cwd), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(f"timed out after {timeout}s: {' '.join(map(str, cmd))}\n--- stdout\n{out[-8000:]}\n--- stderr\n{err[-8000:]}")


def _check(p: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert p.returncode == 0, (
        f"{what} exited {p.returncode}: {' '.join(map(str, p.args))}\n"
        f"--- stdout\n{p.stdout[-8000:]}\n--- stderr\n{p.stderr[-12000:]}"
    )
    return p


def _under(path: str | Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _clean_env(root: Path, venv: Path | None = None) -> dict:
    """The environment of a user outside the checkout: no PYTHONPATH, no repo on PATH, homes in tmp, offline."""
    drop = ("PYTHON", "PREFECT_", "VLALIGN_", "DASK_", "PIP_", "VIRTUAL_ENV", "CONDA_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not _under(p, REPO)]
    if venv is not None:
        path.insert(0, str(venv / "bin"))
        env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join(path)
    home = root / "home"
    env.update({
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "HF_HOME": str(home / ".cache" / "huggingface"),
        "TORCH_HOME": str(home / ".cache" / "torch"),
        "MPLCONFIGDIR": str(home / ".config" / "matplotlib"),
        "VLALIGN_HOME": str(home),  # Prefect's home is derived from it
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PYTHONNOUSERSITE": "1",
    })
    home.mkdir(parents=True, exist_ok=True)
    return env


def _deps_site_dirs() -> list[str]:
    """Where this interpreter (the project's venv) has the pinned dependencies installed."""
    dirs = []
    for key in ("purelib", "platlib"):
        d = sysconfig.get_path(key)
        if d and d not in dirs and Path(d).is_dir():
            dirs.append(d)
    return dirs


# Source folder -> its place in the installed package (pyproject.toml's [tool.setuptools.package-dir]).
PACKAGE_DIRS = {"vlalign": "vlalign", "flows": "vlalign/flows", "tasks": "vlalign/tasks", "sql": "vlalign/sql",
                "data": "vlalign/data"}


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("wheel-build")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    dist = root / "dist"
    env = _clean_env(root)
    p = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
              "-w", dist, src], env=env, cwd=root)
    _check(p, "pip wheel")
    (whl,) = dist.glob("vlalign-*.whl")
    return {"wheel": whl, "src": src}


@pytest.fixture(scope="module")
def wheel(build) -> Path:
    return build["wheel"]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A fresh venv under tmp with the wheel installed (no -e) and the project's dependencies reused."""
    root = tmp_path_factory.mktemp("wheel-venv")
    venv = root / "venv"
    env = _clean_env(root, venv)
    _check(_run([sys.executable, "-m", "venv", venv], env=env, cwd=root), "python -m venv")
    py = venv / "bin" / "python"
    # Install before the dependencies are on its path, so pip sees only this venv (not the checkout's
    # editable install of the same name and version).
    _check(_run([py, "-m", "pip", "install", "--no-deps", "--no-index", wheel], env=env, cwd=root),
           "pip install wheel")
    site = Path(_check(_run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env=env, cwd=root),
                       "sysconfig").stdout.strip())
    assert site.is_dir() and _under(site, venv), site
    deps = _deps_site_dirs()
    assert deps, "no site-packages found for the running interpreter"
    (site / "zz_vlalign_test_deps.pth").write_text("".join(d + "\n" for d in deps))
    work = root / "work"
    work.mkdir()
    return {"root": root, "venv": venv, "py": py, "bin": venv / "bin", "site": site, "deps": deps, "env": env,
            "work": work}


def test_wheel_contents(build):
    wheel = build["wheel"]
    names = zipfile.ZipFile(wheel).namelist()
    missing = REQUIRED - set(names)
    assert not missing, f"missing from {wheel.name}: {sorted(missing)}"
    # Every file of the package folders ships: a new subpackage missing from [tool.setuptools] packages, or a
    # new SQL/data file not matched by package-data, works from the checkout's editable install and fails
    # from the wheel.
    expected = set()
    for folder, dest in PACKAGE_DIRS.items():
        for f in (build["src"] / folder).rglob("*"):
            rel = f.relative_to(build["src"] / folder)
            if f.is_file() and "__pycache__" not in rel.parts and not any(p.startswith(".") for p in rel.parts):
                expected.add(f"{dest}/{rel.as_posix()}")
    not_shipped = expected - set(names)
    assert not not_shipped, (f"files missing from {wheel.name}: {sorted(not_shipped)} (add the package to "
                             f"[tool.setuptools] packages or the files to package-data in pyproject.toml)")
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"vlalign", "vlalign-0.1.0.dist-info"}, f"unexpected top-level entries: {sorted(tops)}"
    for bad in ("flows/", "tasks/", "sql/", "data/"):
        assert not any(n.startswith(bad) for n in names), f"top-level {bad} in the wheel"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    with zipfile.ZipFile(wheel) as z:
        assert z.read("vlalign-0.1.0.dist-info/top_level.txt").decode().split() == ["vlalign"]
        entry_points = z.read("vlalign-0.1.0.dist-info/entry_points.txt").decode()
    assert "vlalign = vlalign.cli.main:main" in entry_points


_PROBE = r"""
import importlib.metadata, importlib.util, json, sys
import vlalign, vlalign.cli.main, vlalign.flows, vlalign.flows.sweep, vlalign.tasks, vlalign.tasks.analysis
import vlalign.sql, vlalign.data, vlalign.datalake.catalog, vlalign.datasets.readers, vlalign.engine.spec
print(json.dumps({
    "modules": {n: m.__file__ for n, m in sorted(sys.modules.items())
                if (n == "vlalign" or n.startswith("vlalign.")) and getattr(m, "__file__", None)},
    "sql_dir": str(vlalign.datalake.views.SQL_DIR),
    "data_dir": str(vlalign.datasets.readers.DATA_DIR),
    "default_spec": str(vlalign.engine.spec.DEFAULT_SPEC),
    "dist": str(importlib.metadata.distribution("vlalign").locate_file("")),
    "toplevel_flows": importlib.util.find_spec("flows") is not None,
    "toplevel_tasks": importlib.util.find_spec("tasks") is not None,
    "editable_finder": [n for n in sys.modules if "editable" in n],
    "sys_path": sys.path,
}))
"""


def test_installed_package_is_the_wheel(installed):
    """`import vlalign` in the new venv resolves to its own site-packages, never to the checkout."""
    p = _check(_run([installed["py"], "-c", _PROBE], env=installed["env"], cwd=installed["work"]), "import probe")
    info = json.loads(p.stdout.strip().splitlines()[-1])
    site = installed["site"]
    assert len(info["modules"]) >= 10, info["modules"]
    outside = {n: f for n, f in info["modules"].items() if not _under(f, site)}
    assert not outside, f"vlalign modules loaded from outside {site}: {outside}"
    for key in ("sql_dir", "data_dir", "default_spec"):
        assert _under(info[key], site), f"{key} = {info[key]} is not in {site}"
        assert Path(info[key]).exists(), f"{key} = {info[key]} does not exist"
    assert _under(info["dist"], site), info["dist"]
    assert not info["toplevel_flows"] and not info["toplevel_tasks"], "top-level flows/tasks importable"
    assert not info["editable_finder"], f"the checkout's editable finder is active: {info['editable_finder']}"
    # The only paths into the checkout are the project's dependency dirs (its venv's site-packages).
    into_repo = [e for e in info["sys_path"] if e and _under(e, REPO) and e not in installed["deps"]]
    assert not into_repo, f"sys.path reaches into the checkout: {into_repo}"


def test_encoders_command(installed):
    p = _check(_run([installed["bin"] / "vlalign", "encoders"], env=installed["env"], cwd=installed["work"]),
               "vlalign encoders")
    for name in ("mobilenetv2", "minilm-l6", "wordllama"):
        assert name in p.stdout, p.stdout
    p = _check(_run([installed["bin"] / "vlalign", "encoders", "--format", "json"], env=installed["env"],
                    cwd=installed["work"]), "vlalign encoders --format json")
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    for name in ("mobilenetv2", "minilm-l6", "wordllama"):
        assert rows[name]["offline"] == "yes", rows[name]


def test_sweep_from_the_wheel(installed):
    from conftest import make_coco

    work, env, vl = installed["work"], installed["env"], installed["bin"] / "vlalign"
    ann, img = make_coco(installed["root"] / "coco", n_images=60, captions_per_image=1)
    spec = {
        "name": "wheel-sweep",
        "datasets": [{"name": "tiny", "format": "coco", "annotations": str(ann), "images": str(img)}],
        "vision_encoders": ["mobilenetv2"],
        "text_encoders": ["wordllama"],
        "analyses": {"cka": {"kernels": ["linear"]}, "matching": ["local_cka"], "retrieval": [], "baselines": [],
                     "qap": {"restarts": 2}},
        "base_size": 20,
        "query_size": 30,
        "seeds": 0,
        "extraction": {"shard_size": 512},
    }
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    lake = installed["root"] / "lake"
    _check(_run([vl, "sweep", "spec.yaml", "--lake", lake, "--workers", "1"], env=env, cwd=work, timeout=SWEEP_TIMEOUT),
           "vlalign sweep")

    p = _check(_run([vl, "query", "select count(*) as n from cka", "--lake", lake, "--format", "json"], env=env,
                    cwd=work), "vlalign query cka")
    rows = json.loads(p.stdout)
    assert len(rows) == 1 and rows[0]["n"] == 1, rows  # 1 vision x 1 text x 1 kernel
    p = _check(_run([vl, "query", "select method, count(*) as n from matching group by method", "--lake", lake,
                     "--format", "json"], env=env, cwd=work), "vlalign query matching")
    methods = {r["method"] for r in json.loads(p.stdout)}
    assert "local_cka" in methods, p.stdout
    # Nothing landed in the checkout: the lake and Prefect's home are where this run put them.
    assert lake.is_dir() and (installed["root"] / "home" / ".prefect").is_dir()
