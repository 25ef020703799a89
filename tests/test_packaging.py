"""The installed package holds every module: an editable install (what the tests run on) finds any folder
on disk, a wheel holds only the packages pyproject.toml lists. A package missing there works here and fails
on an operator's `pip install`; building a wheel needs the network (build isolation), so the list is
checked against the tree instead."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_python_package_is_listed_for_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts)
               for top in ("monitor", "sources") for init in (ROOT / top).rglob("__init__.py")}
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_alembic_files_ship_as_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    store = ROOT / "monitor" / "store"
    shipped = {path for pattern in data["monitor.store"] for path in store.glob(pattern)}
    needed = {path for path in (store / "migrations").rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    assert needed and needed <= shipped
