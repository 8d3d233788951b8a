"""docs/architecture.md and the README's layout section match the tree, and the Hub set imports only itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tevit_hf.model_loading import HUB_CODE_FILES


REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "src" / "tevit_hf"
ARCHITECTURE = (REPO_ROOT / "docs" / "architecture.md").read_text()


def _modules(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.py") if path.name != "__init__.py" and not path.is_symlink()}


def test_architecture_names_every_module_and_only_existing_ones():
    named = set(re.findall(r"`([a-z_]+\.py)`", ARCHITECTURE))
    for folder in (PACKAGE, PACKAGE / "commands"):
        missing = _modules(folder) - named
        assert not missing, f"docs/architecture.md does not describe {sorted(missing)}"
    existing = _modules(PACKAGE) | _modules(PACKAGE / "commands") | {"__init__.py"}
    existing |= {path.name for path in PACKAGE.rglob("*.py")} | {
        path.name for path in (REPO_ROOT / "scripts").glob("*.py")
    }
    assert named <= existing, f"docs/architecture.md names modules that do not exist: {sorted(named - existing)}"


def test_every_hub_file_is_in_the_architecture_hub_table():
    hub_section = ARCHITECTURE.split("## The Hub set")[1].split("## The library")[0]
    for name in HUB_CODE_FILES:
        assert f"`{name}`" in hub_section, name


def test_only_commands_import_commands():
    for path in PACKAGE.rglob("*.py"):
        if "commands" in path.relative_to(PACKAGE).parts or path.is_symlink():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and "commands" in node.module.split("."):
                # The one allowed exception: training's optional Hub push uses the upload tool.
                assert path.name == "trainer.py" and node.module.endswith("push_to_hub"), f"{path}: {node.module}"
