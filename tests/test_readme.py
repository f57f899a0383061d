"""The README's notebook example runs as written (paths pointed at the reference data)."""
import contextlib
import io
import json
import re


def notebook_example(readme: str) -> str:
    section = readme.split("## Score audio in a notebook", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_inference_example_runs(repo_root, reference_dir, monkeypatch):
    code = notebook_example((repo_root / "README.md").read_text())
    audio = reference_dir / "LA_tiny" / "ASVspoof2019_LA_eval" / "flac" / "LA_E_2000000.flac"
    code = code.replace("checkpoints/weights/AASIST.pth", str(reference_dir / "weights" / "AASIST.pth"))
    code = re.sub(r'"LA/ASVspoof2019_LA_eval/flac/[^"]+"', repr(str(audio)), code)
    monkeypatch.chdir(repo_root)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    expected = json.loads((reference_dir / "LA_tiny_scores.json").read_text())["LA_E_2000000"]
    assert out.getvalue().startswith(f"score {expected:.3f}:")


def test_readme_test_command_is_what_ci_runs(repo_root):
    readme = (repo_root / "README.md").read_text()
    ci = (repo_root / ".ci" / "run").read_text()
    command = "python -m pytest -q"
    assert command in readme and ci.strip().splitlines()[-1] == command
