"""Bad input to train / render / evaluate / verify: one line, non-zero exit, nothing written."""


import conftest



def run_cli(args, capsys):
    """(exit code, stderr) of `lokitalk ARGS`."""
    code, _, err = conftest.run_cli(args, capsys)
    return code, err


def assert_one_line_error(code, err, *needles):
    assert code not in (0, None)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err


def test_train_refuses_a_folder_that_is_not_an_avatar(tmp_path, capsys):
    (tmp_path / "avatar").mkdir()
    code, err = run_cli(["train", tmp_path / "avatar", "--out", tmp_path / "model", "-q"], capsys)
    assert_one_line_error(code, err, "not a prepared avatar")
    assert not (tmp_path / "model").exists()


def test_train_points_at_an_unfinished_prepare(tmp_path, capsys):
    (tmp_path / "avatar.partial").mkdir()
    code, err = run_cli(["train", tmp_path / "avatar", "--out", tmp_path / "model"], capsys)
    assert_one_line_error(code, err, "run prepare again")


def test_train_rejects_bad_options(tmp_path, capsys):
    for args, needle in ((["--preset", "huge"], "--preset"), (["--deformation", "local"], "--deformation"),
                         (["--steps", "0"], "--steps"), (["--lip-input", "whiten"], "--lip-input"),
                         (["--eye-input", "whiten"], "--eye-input"),
                         (["--torso-motion", "elastic"], "--torso-motion"),
                         (["--deformation", "global", "--torso-motion", "rigid"], "needs region deformation"),
                         (["--prior", tmp_path, "--torso-motion", "rigid"], "not a LokiTalk prior"),
                         (["--finetune-schedule", "0.1,1,1"], "needs --prior"),
                         (["--prior", tmp_path, "--finetune-schedule", "0.1,1"], "FRACTION,NETS,GRID"),
                         (["--prior", tmp_path, "--finetune-schedule", "a,b,c"], "FRACTION,NETS,GRID"),
                         (["--prior", tmp_path, "--finetune-schedule", "1.5,1,1"], "fraction in [0, 1]"),
                         (["--fine-deformation-seconds", "-1"], "--fine-deformation-seconds"),
                         (["--fine-deformation-seconds", "nan"], "--fine-deformation-seconds")):
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", *args], capsys)
        assert_one_line_error(code, err, needle)
        assert not (tmp_path / "m").exists()


def test_train_refines_poses_as_the_preset_says_with_or_without_a_prior(tmp_path, capsys, monkeypatch):
    """`fast` refines poses, from scratch and fine-tuning a prior alike, `tiny` does not, and the
    flags override both (the setting that reaches the trainer)."""
    import lokitalk.train.trainer as trainer

    seen = []
    monkeypatch.setattr(trainer, "train", lambda avatar, out, config, **kwargs: (
        seen.append((config.pose_refinement, kwargs.get("prior"))), {"finished": True})[1])
    cases = ((["--preset", "fast"], True), (["--preset", "fast", "--prior", tmp_path], True),
             (["--preset", "fast", "--prior", tmp_path, "--no-refine-poses"], False),
             (["--preset", "tiny", "--prior", tmp_path], False), (["--preset", "tiny", "--refine-poses"], True),
             (["--preset", "fast", "--no-refine-poses"], False))
    for args, refined in cases:
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", *args], capsys)
        assert code in (0, None), err
        assert seen[-1] == (refined, tmp_path if "--prior" in args else None)
    assert len(seen) == len(cases)


def test_train_face_depth_flag_sets_the_weight_and_rejects_a_negative_one(tmp_path, capsys, monkeypatch):
    import lokitalk.train.trainer as trainer
    from lokitalk.train.config import preset

    seen = []
    monkeypatch.setattr(trainer, "train", lambda avatar, out, config, **kwargs: (
        seen.append((config.face_depth_weight, config.face_depth_lower_face)), {"finished": True})[1])
    fast = preset("fast").face_depth_weight
    for args, expected in ((["--preset", "fast"], (fast, False)), (["--face-depth", "0.002"], (0.002, False)),
                           (["--preset", "fast", "--face-depth", "0"], (0.0, False)),
                           (["--preset", "fast", "--lower-face-depth"], (fast, True)),
                           (["--face-depth", "0.002", "--lower-face-depth"], (0.002, True))):
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", *args], capsys)
        assert code in (0, None), err
        assert seen[-1] == expected
    for bad in ("-1", "nan"):
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", "--face-depth", bad], capsys)
        assert_one_line_error(code, err, "--face-depth must be 0 or more")
    for off in (["--preset", "tiny"], ["--preset", "fast", "--face-depth", "0"]):  # nothing to add the lower face to
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", *off, "--lower-face-depth"], capsys)
        assert_one_line_error(code, err, "--lower-face-depth needs face depth on")
    assert len(seen) == 5


def test_train_refine_body_flag_overrides_the_preset(tmp_path, capsys, monkeypatch):
    import lokitalk.train.trainer as trainer
    from lokitalk.train.config import preset

    seen = []
    monkeypatch.setattr(trainer, "train", lambda avatar, out, config, **kwargs: (
        seen.append(config.body_refinement), {"finished": True})[1])
    for args, expected in ((["--preset", "fast"], preset("fast").body_refinement),
                           (["--preset", "fast", "--refine-body"], True),
                           (["--preset", "fast", "--no-refine-body"], False)):
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", *args], capsys)
        assert code in (0, None), err
        assert seen[-1] == expected
    assert len(seen) == 3


def test_train_prune_flag_sets_the_threshold_and_rejects_a_bad_one(tmp_path, capsys, monkeypatch):
    import lokitalk.train.trainer as trainer
    from lokitalk.train.config import PRUNE

    seen = []
    monkeypatch.setattr(trainer, "train", lambda avatar, out, config, **kwargs: (
        seen.append(config.prune), {"finished": True})[1])
    for args, expected in (([], PRUNE), (["--prune", "0"], 0.0), (["--prune", "1e-3"], 1e-3)):
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", *args], capsys)
        assert code in (0, None), err
        assert seen[-1] == expected
    for bad in ("-1e-4", "1", "nan"):
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", "--prune", bad], capsys)
        assert_one_line_error(code, err, "--prune must be at least 0 and below 1")
    assert len(seen) == 3


def test_train_sampling_and_distortion_flags_override_the_preset(tmp_path, capsys, monkeypatch):
    import lokitalk.train.trainer as trainer
    from lokitalk.train.config import preset

    seen = []
    monkeypatch.setattr(trainer, "train", lambda avatar, out, config, **kwargs: (
        seen.append((config.box_sampling, config.distortion_weight, config.fine_samples, config.fine_padding,
                     config.fine_with_coarse)), {"finished": True})[1])
    fast = preset("fast")
    for args, expected in ((["--preset", "fast"], (fast.box_sampling, fast.distortion_weight, fast.fine_samples,
                                                   fast.fine_padding, fast.fine_with_coarse)),
                           (["--box-sampling", "--distortion", "0.01", "--fine-samples", "12", "--fine-padding", "0.3",
                             "--fine-with-coarse"], (True, 0.01, 12, 0.3, True)),
                           (["--preset", "fast", "--no-box-sampling", "--distortion", "0", "--fine-samples", "0",
                             "--fine-only"], (False, 0.0, 0, fast.fine_padding, False))):
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", *args], capsys)
        assert code in (0, None), err
        assert seen[-1] == expected
    for bad in ("-0.1", "nan"):
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", "--distortion", bad], capsys)
        assert_one_line_error(code, err, "--distortion must be 0 or more")
    code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", "--fine-samples", "-4"], capsys)
    assert_one_line_error(code, err, "--fine-samples must be 0 (off) or more")
    for bad in ("1.5", "nan"):
        code, err = run_cli(["train", tmp_path, "--out", tmp_path / "m", "-q", "--fine-padding", bad], capsys)
        assert_one_line_error(code, err, "--fine-padding must be between 0 and 1")
    assert len(seen) == 3


def test_pretrain_sampler_flags_override_the_preset_and_a_bad_one_writes_nothing(tmp_path, capsys, monkeypatch):
    import lokitalk.train.pretrain as pretrain_module
    from lokitalk.train.config import preset

    seen = []
    monkeypatch.setattr(pretrain_module, "pretrain", lambda avatars, out, config, **kwargs: (
        seen.append((config.train.fine_samples, config.train.fine_with_coarse)), {"finished": True})[1])
    fast = preset("fast")
    base = ["pretrain", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "p", "-q", "--steps", "10"]
    for args, expected in ((["--preset", "fast"], (fast.fine_samples, fast.fine_with_coarse)),
                           (["--preset", "fast", "--fine-samples", "0", "--fine-only"], (0, False)),
                           (["--fine-samples", "4", "--fine-with-coarse"], (4, True))):
        code, err = run_cli([*base, *args], capsys)
        assert code in (0, None), err
        assert seen[-1] == expected
    code, err = run_cli([*base, "--fine-samples", "-1"], capsys)
    assert_one_line_error(code, err, "--fine-samples must be 0 (off) or more")
    assert len(seen) == 3 and not (tmp_path / "p").exists()


def test_torso_motion_with_a_prior_is_the_priors_and_pretrain_sets_it(tmp_path, capsys, monkeypatch):
    """`train --prior P --torso-motion M` runs only when P's torso stage is M (a fine-tune keeps
    its prior's); `pretrain --torso-motion` reaches the pretraining config, a bad one writes nothing."""
    import json

    import lokitalk.train.pretrain as pretrain_module
    import lokitalk.train.trainer as trainer
    from lokitalk.model.field import ModelConfig
    from lokitalk.model.identity import IdentityConfig
    from lokitalk.train.checkpoint import model_config_to_dict
    from lokitalk.train.prior import PRIOR_FORMAT, prior_model_config

    prior = tmp_path / "prior"
    prior.mkdir()
    config = prior_model_config(ModelConfig(), IdentityConfig(), 16, torso_motion="learned")
    (prior / "prior.json").write_text(json.dumps({"format": PRIOR_FORMAT, "model": model_config_to_dict(config)}))
    trained = []
    monkeypatch.setattr(trainer, "train", lambda avatar, out, config, **kwargs: (
        trained.append(kwargs.get("prior")), {"finished": True})[1])
    base = ["train", tmp_path, "--out", tmp_path / "m", "-q", "--prior", prior]
    code, err = run_cli([*base, "--torso-motion", "rigid"], capsys)
    assert_one_line_error(code, err, "has a learned torso stage", "pretrain with --torso-motion rigid")
    assert not trained and not (tmp_path / "m").exists()
    code, err = run_cli([*base, "--torso-motion", "learned"], capsys)
    assert code in (0, None), err
    assert trained == [prior]

    seen = []
    monkeypatch.setattr(pretrain_module, "pretrain", lambda avatars, out, config, **kwargs: (
        seen.append(config.torso_motion), {"finished": True})[1])
    base = ["pretrain", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "p", "-q", "--steps", "10"]
    for args, expected in (([], "learned"), (["--torso-motion", "rigid"], "rigid")):
        code, err = run_cli([*base, *args], capsys)
        assert code in (0, None), err
        assert seen[-1] == expected
    code, err = run_cli([*base, "--torso-motion", "elastic"], capsys)
    assert_one_line_error(code, err, "--torso-motion must be one of learned, rigid")
    assert len(seen) == 2 and not (tmp_path / "p").exists()


def test_render_and_evaluate_need_a_trained_model(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    code, err = run_cli(["evaluate", tmp_path / "model"], capsys)
    assert_one_line_error(code, err, "not a LokiTalk model folder")
    (tmp_path / "model" / "model.json").write_text("{}")
    (tmp_path / "model" / "checkpoint.json").write_text('{"step": 10}')
    code, err = run_cli(["render", tmp_path / "model", "--out", tmp_path / "x.mp4"], capsys)
    assert_one_line_error(code, err, "no trained weights", "--resume")
    assert not (tmp_path / "x.mp4").exists()


def test_verify_rejects_what_is_not_a_video(tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    code, err = run_cli(["verify", text], capsys)
    assert_one_line_error(code, err, "not a video")


def test_train_help_states_each_presets_real_step_count_and_the_configs_defaults():
    import inspect

    from lokitalk import cli
    from lokitalk.train.config import TrainConfig, preset

    options = inspect.signature(cli.train).parameters
    help_text = options["preset"].default.help
    for name in ("tiny", "fast", "full"):
        after = help_text.split(name, 1)[1]
        assert after.lstrip(" (").startswith(str(preset(name).steps)), (name, help_text)
    # the CLI keeps its own literal (importing the config would load torch for every command)
    assert options["fine_deformation_seconds"].default.default == TrainConfig().fine_deformation_seconds
