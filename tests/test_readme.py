"""The README's notebook example runs as written (paths pointed at the reference data)."""
import contextlib
import io
import json
import re


def python_example(readme: str, heading: str) -> str:
    section = readme.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_example(repo_root, reference_dir, monkeypatch, heading: str) -> str:
    """Run a README example with the weights and the audio path pointed at the reference data; its output."""
    code = python_example((repo_root / "README.md").read_text(), heading)
    audio = reference_dir / "LA_tiny" / "ASVspoof2019_LA_eval" / "flac" / "LA_E_2000000.flac"
    code = code.replace("checkpoints/weights/AASIST.pth", str(reference_dir / "weights" / "AASIST.pth"))
    code = re.sub(r'"LA/ASVspoof2019_LA_eval/flac/[^"]+"', repr(str(audio)), code)
    monkeypatch.chdir(repo_root)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    return out.getvalue()


def published_score(reference_dir) -> float:
    return json.loads((reference_dir / "LA_tiny_scores.json").read_text())["LA_E_2000000"]


def test_readme_inference_example_runs(repo_root, reference_dir, monkeypatch):
    printed = run_example(repo_root, reference_dir, monkeypatch, "## Score audio in a notebook")
    assert printed.startswith(f"score {published_score(reference_dir):.3f}:")


def test_readme_score_example_runs(repo_root, reference_dir, monkeypatch):
    printed = run_example(repo_root, reference_dir, monkeypatch, "## Score your own recordings")
    score, probability, window_min = (float(v) for v in printed.split())
    assert abs(score - published_score(reference_dir)) < 1e-4
    assert 0 <= probability <= 1 and window_min <= score


def test_readme_test_command_is_what_ci_runs(repo_root):
    readme = (repo_root / "README.md").read_text()
    ci = (repo_root / ".ci" / "run").read_text()
    command = "python -m pytest -q"
    assert command in readme and ci.strip().splitlines()[-1] == command
