"""The project files agree with each other: environment.yml, pyproject.toml, README and CI."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

REPO = Path(__file__).resolve().parent.parent
CONDA_TO_PIP = {"pytorch": "torch"}


def package_name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = {package_name(r) for r in pyproject["project"]["dependencies"]}
    for extra in ("test", "lab"):
        wanted |= {package_name(r) for r in pyproject["project"]["optional-dependencies"][extra]}
    conda = set()
    dependencies = (REPO / "environment.yml").read_text().split("dependencies:", 1)[1]
    for line in dependencies.splitlines():
        match = re.match(r"^\s+- ([A-Za-z][\w.-]*)", line)
        if match and match.group(1) not in ("pip", "python"):
            conda.add(CONDA_TO_PIP.get(match.group(1), match.group(1)).lower())
    assert conda == wanted, f"only in environment.yml: {conda - wanted}; only in pyproject: {wanted - conda}"
    assert "- -e ." in (REPO / "environment.yml").read_text()


def test_ci_runs_the_readme_setup_and_test_commands():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert 'env -u PIP_FIND_LINKS .venv/bin/pip install -e ".[test,lab]"' in readme
    assert 'env -u PIP_FIND_LINKS .venv/bin/pip install -q -e ".[test,lab]"' in ci
    assert ".venv/bin/python -m pytest" in readme and ".venv/bin/python -m pytest" in ci


def test_console_script_points_at_the_cli():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["lora-teach"] == "lora_teach.cli:main"


def test_the_core_does_not_import_the_course_machinery():
    """lora_teach/*.py (the LoRA core, data, models, experiments) and lora_teach/bench/ never import
    lora_teach.course; only the command dispatcher names its modules."""
    import ast

    for path in sorted([*(REPO / "lora_teach").glob("*.py"), *(REPO / "lora_teach" / "bench").glob("*.py")]):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            assert not any(n == "lora_teach.course" or n.startswith("lora_teach.course.") for n in names), (
                f"{path.relative_to(REPO)} imports the course machinery"
            )
