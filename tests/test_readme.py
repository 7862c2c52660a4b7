"""README.md's code works: every ```python block runs with the tiny presets, in a folder holding the files it names
(outputs/demo/model, a tiny model with the demo's fixation-node head; chest.dcm, a.png, b.dcm). A block whose first
line is `# needs: ...` (the Hub, a GPU, the user's data) only has its imports run. CI (.ci/run) runs the
install-and-test commands README.md shows."""

import ast
import re
import shutil

import pytest
from PIL import Image

from .conftest import REPOSITORY_ROOT

README = REPOSITORY_ROOT / "README.md"
NEEDS_MARKER = "# needs:"
CI_SCRIPT = REPOSITORY_ROOT / ".ci" / "run"
CI_README_MARKER = "# README.md's commands"


def python_blocks() -> list[tuple[int, str]]:
    """(line of the block's first code line, source) for each ```python block of README.md."""
    text = README.read_text()
    return [
        (text[: match.start(1)].count("\n") + 1, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    ]


BLOCKS = python_blocks()


def bash_block_commands() -> list[list[str]]:
    """The commands of each ```bash block of README.md, one a line, without their comments."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.DOTALL | re.MULTILINE)
    lines = [[line.split(" #")[0].strip() for line in block.splitlines()] for block in blocks]
    return [[command for command in block if command] for block in lines]


@pytest.fixture
def readme_folder(tmp_path, monkeypatch, tiny_processor, rg1_uncr, xray):
    from modeling_gaze2report import Gaze2ReportConfig, Gaze2ReportForConditionalGeneration

    model = Gaze2ReportForConditionalGeneration(Gaze2ReportConfig(use_fixation_findings=True))  # as the demo's
    model.save_pretrained(tmp_path / "outputs" / "demo" / "model")
    tiny_processor.save_pretrained(tmp_path / "outputs" / "demo" / "model")
    for name in ("chest.dcm", "b.dcm"):
        shutil.copy(rg1_uncr, tmp_path / name)
    Image.fromarray(xray).save(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_runnable_blocks():
    runnable = [source for _, source in BLOCKS if not source.startswith(NEEDS_MARKER)]
    assert len(runnable) >= 3, "README.md's quickstart, API and data blocks run in this test"


@pytest.mark.parametrize("line, source", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block(line, source, readme_folder):
    filename = f"README.md:{line}"
    tree = ast.parse(source, filename=filename)
    if source.startswith(NEEDS_MARKER):
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert imports, f"{filename}: a block skipped for '{source.splitlines()[0]}' still names its imports"
        tree = ast.Module(body=imports, type_ignores=[])
    exec(compile(tree, filename, "exec"), {"__name__": "readme_block"})


def shows_in_order(commands: list[str], block: list[str]) -> bool:
    """Whether `block` holds `commands` in this order (other commands may come between)."""
    remaining = iter(block)
    return all(command in remaining for command in commands)


def test_ci_runs_the_install_and_test_commands_readme_shows():
    script = CI_SCRIPT.read_text()
    assert CI_README_MARKER in script, f".ci/run marks README.md's commands with '{CI_README_MARKER}'"
    ci_commands = [line.strip() for line in script.split(CI_README_MARKER, 1)[1].splitlines()[1:] if line.strip()]
    assert ci_commands and ci_commands[-1].startswith("make test")
    assert any(shows_in_order(ci_commands, block) for block in bash_block_commands()), (
        f"README.md shows no ```bash block with these commands, in this order: {ci_commands}"
    )
