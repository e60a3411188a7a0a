import json

import pytest

from lokitalk.errors import InputError
from lokitalk.prepare.runner import Reporter, Step, StepRunner


class Recorder:
    def __init__(self):
        self.calls = []

    def step(self, name, fail_with=None):
        def run(ctx):
            self.calls.append(name)
            if fail_with is not None:
                raise fail_with
            ctx.path(f"{name}.txt").write_text(name)
            return {"value": len(self.calls)}

        return run


def make_steps(rec, config="a", fail_at=None, error=KeyboardInterrupt()):
    return [Step(name, rec.step(name, error if name == fail_at else None), 1, config if name == "two" else None)
            for name in ("one", "two", "three")]


def finish(ctx):
    return {"steps": sorted(ctx.results)}


def run(tmp_path, steps, identity="src"):
    return StepRunner(tmp_path / "out", identity, "thing", Reporter(quiet=True)).run(steps, {}, finish)


def test_finished_steps_are_skipped_on_a_rerun(tmp_path):
    rec = Recorder()
    run(tmp_path, make_steps(rec))
    assert rec.calls == ["one", "two", "three"]
    rec2 = Recorder()
    summary = run(tmp_path, make_steps(rec2))
    assert rec2.calls == [] and summary == {"steps": ["one", "three", "two"]}
    assert (tmp_path / "out" / "summary.json").exists() and not (tmp_path / "out.partial").exists()


def test_a_changed_config_reruns_that_step_and_everything_after(tmp_path):
    run(tmp_path, make_steps(Recorder()))
    rec = Recorder()
    run(tmp_path, make_steps(rec, config="b"))
    assert rec.calls == ["two", "three"]


def test_a_changed_input_reruns_everything(tmp_path):
    run(tmp_path, make_steps(Recorder()))
    rec = Recorder()
    run(tmp_path, make_steps(rec), identity="other-video")
    assert rec.calls == ["one", "two", "three"]


def test_an_interrupted_run_leaves_only_a_partial_folder_and_resumes(tmp_path):
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, make_steps(rec, fail_at="three"))
    assert not (tmp_path / "out").exists()  # nothing that looks complete
    assert (tmp_path / "out.partial" / "steps" / "two.json").exists()
    rec2 = Recorder()
    run(tmp_path, make_steps(rec2))
    assert rec2.calls == ["three"]
    assert json.loads((tmp_path / "out" / "steps" / "three.json").read_text())["result"]["value"] == 1


def test_bad_input_on_a_fresh_run_leaves_nothing(tmp_path):
    with pytest.raises(InputError):
        run(tmp_path, make_steps(Recorder(), fail_at="two", error=InputError("bad video")))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_refuses_to_overwrite_a_folder_that_is_not_its_own(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="is not a LokiTalk thing"):
        run(tmp_path, make_steps(Recorder()))
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"
