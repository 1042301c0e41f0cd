"""The EMA teacher: the update formula by hand, shared frozen weights, eval-mode embeddings as extra model outputs,
GradCache chunks, checkpoint files and their checks, and the loss/teacher configuration checks."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from medclip.checkpoint import CheckpointError
from medclip.config import ConfigError
from medclip.losses import build_loss
from medclip.nn.freeze import keep_in_eval
from medclip.train.config import EmaConfig
from medclip.train.ema import EMA_FILE, EmaTeacher, check_teacher, load_ema_weights
from medclip.train.gradcache import GradCache
from tests.medclip.train.tiny import tiny_batch, tiny_model


def test_update_follows_the_formula_and_shares_frozen_weights():
    model = tiny_model()
    teacher = EmaTeacher(model, decay=0.9)
    fixed = model.encoders["ecg"].fixed.weight
    assert teacher.model.encoders["ecg"].fixed.weight is fixed  # frozen: shared, not copied
    assert not any(name.endswith("fixed.weight") for name in teacher.state())  # and not saved twice
    assert teacher.model.encoders["ecg"].linear.weight is not model.encoders["ecg"].linear.weight
    before = {name: tensor.clone() for name, tensor in teacher.model.state_dict().items()}
    model.train()
    for _ in range(2):  # the student moves: new weights and new BatchNorm statistics
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn_like(parameter))
        model(tiny_batch())
    teacher.update(model)
    student = model.state_dict()
    for name, value in teacher.model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            assert value == student[name] == 2, name  # counters follow the model
        elif name.endswith("fixed.weight") or name.endswith("fixed.bias"):
            assert torch.equal(value, before[name]), name  # frozen: never moves
        else:  # teacher = decay * teacher + (1 - decay) * model
            torch.testing.assert_close(value, 0.9 * before[name] + 0.1 * student[name], rtol=1e-6, atol=1e-7)
    # a second step compounds: 0.9 * (0.9 t + 0.1 s) + 0.1 s
    teacher.update(model)
    weight = "encoders.report.linear.weight"
    expected = 0.81 * before[weight] + 0.19 * student[weight]
    torch.testing.assert_close(teacher.model.state_dict()[weight], expected, rtol=1e-6, atol=1e-7)


def test_teacher_embeddings_are_extra_outputs_without_gradient_in_eval_mode():
    model = tiny_model()
    teacher = EmaTeacher(model, decay=0.99)
    model.train()
    batch = tiny_batch()
    extra = teacher.outputs(batch)
    assert set(extra) == {"teacher_features", "frozen_features"}
    assert extra["frozen_features"] is extra["teacher_features"]  # cwcl reads frozen_features
    again = teacher.outputs(batch)
    for name, features in extra["teacher_features"].items():
        assert features.shape == (6, 3) and not features.requires_grad
        torch.testing.assert_close(again["teacher_features"][name], features, rtol=0, atol=0)  # no dropout: eval
    assert not extra["teacher_features"]["ecg"][2].any()  # a missing row is zeros, as in the model's outputs
    model.eval()
    with torch.no_grad():
        student = model(batch)["features"]
    for name in student:  # a fresh teacher is the model
        torch.testing.assert_close(extra["teacher_features"][name], student[name], rtol=0, atol=0)


def test_teacher_keeps_frozen_modules_in_eval_on_its_own_copy():
    model = tiny_model()
    keep_in_eval(model.encoders["report"].norm)
    teacher = EmaTeacher(model, decay=0.9)
    copied = teacher.model.encoders["report"].norm
    assert copied is not model.encoders["report"].norm
    copied.train()  # the pinned `train` is bound to the copy, not to the student's module
    assert not copied.training
    model.train()
    assert model.encoders["report"].linear.training and not model.encoders["report"].norm.training


def test_teacher_embeddings_in_grad_cache_chunks_equal_the_whole_batch():
    """GradCache embeds a batch in chunks; the teacher does too, with the same result, and the losses match."""
    torch.manual_seed(3)
    model = tiny_model()
    teacher = EmaTeacher(model, decay=0.5)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.3 * torch.randn_like(parameter))
    model.eval()  # GradCache equals the plain step when rows are independent (no BatchNorm batch statistics)
    batch = tiny_batch()
    whole, chunked = teacher.outputs(batch), teacher.outputs(batch, chunk_size=4)
    for name in whole["teacher_features"]:
        torch.testing.assert_close(chunked["teacher_features"][name], whole["teacher_features"][name])
    criterion = build_loss({"clip": 0.6, "distill": 0.4})
    plain = criterion(**model(batch), **whole)
    plain["loss"].backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    cached = GradCache(model, criterion, chunk_size=4).step(batch, extra_outputs=chunked)
    torch.testing.assert_close(cached["loss"], plain["loss"].detach())
    assert plain["distill_loss"] > 0
    for name, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6)


def test_checkpoint_file_round_trip_and_checks(tmp_path):
    model = tiny_model()
    teacher = EmaTeacher(model, decay=0.9)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(1.0)
    teacher.update(model)
    written = []
    teacher.writer(also=lambda staging: written.append(staging))(tmp_path)
    assert written == [tmp_path] and (tmp_path / EMA_FILE).is_file()
    fresh = EmaTeacher(tiny_model(), decay=0.9)
    fresh.restore(tmp_path)
    for name, value in teacher.state().items():
        assert torch.equal(fresh.state()[name], value), name
    # load_ema_weights puts the teacher into a model (to evaluate the teacher itself)
    evaluated = load_ema_weights(tmp_path, tiny_model())
    torch.testing.assert_close(
        evaluated.encoders["ecg"].linear.weight, teacher.model.encoders["ecg"].linear.weight, rtol=0, atol=0
    )
    # a file that does not fit is refused before anything is copied
    saved = load_file(str(tmp_path / EMA_FILE))
    saved.pop("parameters.heads.ecg.net.weight")
    saved["parameters.heads.ct.net.weight"] = torch.zeros(3, 4)
    save_file(saved, str(tmp_path / EMA_FILE))
    other = EmaTeacher(tiny_model(), decay=0.9)
    before = {name: value.clone() for name, value in other.state().items()}
    with pytest.raises(CheckpointError, match=r"1 missing tensors .*heads.ecg.net.weight.*1 unexpected"):
        other.restore(tmp_path)
    assert all(torch.equal(other.state()[name], value) for name, value in before.items())
    with pytest.raises(CheckpointError, match="trained without train.ema"):
        other.restore(tmp_path / "nowhere")


def test_losses_needing_the_teacher_are_refused_without_one():
    with pytest.raises(ConfigError, match="loss distill needs the EMA teacher.*train.ema.decay"):
        check_teacher(build_loss({"clip": 1.0, "distill": 0.4}), None)
    check_teacher(build_loss({"clip": 1.0, "cwcl": 0.5}), None)  # cwcl falls back on the model's own features
    assert EmaTeacher.create(tiny_model(), EmaConfig(decay=0.0)) is None
    with pytest.raises(ConfigError, match="not available with train.parallel: fsdp"):
        EmaTeacher.create(tiny_model(), EmaConfig(decay=0.99), parallel="fsdp")
    with pytest.raises(ConfigError, match=r"train.ema.decay must be in \[0, 1\)"):
        EmaConfig(decay=1.0)
