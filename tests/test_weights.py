"""Weights: safetensors only, metadata round trip, clear errors for bad files."""

import json

import pytest
import torch
from safetensors.torch import save_file

from unlearnable_cli.models.weights import WeightsError, load_generator, read_card, save_generator

from conftest import tiny_model


def test_round_trip_keeps_weights_and_card(tmp_path):
    model, card = tiny_model()
    card.metrics = {"val_clean_acc": 0.5}
    path = tmp_path / "g.safetensors"
    save_generator(path, model, card)
    loaded, card2 = load_generator(path)
    assert card2 == card
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert not loaded.training
    assert read_card(path).class_names == card.class_names


def test_pickle_formats_are_refused(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"not even read")
    with pytest.raises(WeightsError, match="only .safetensors"):
        load_generator(p)


def test_missing_truncated_and_corrupted_files(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_generator(tmp_path / "nope.safetensors")
    model, card = tiny_model()
    path = tmp_path / "g.safetensors"
    save_generator(path, model, card)
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="trunc.safetensors: not a readable safetensors"):
        load_generator(tmp_path / "trunc.safetensors")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF                                   # a bit flip in the tensor bytes
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(WeightsError, match="does not match its recorded SHA-256"):
        load_generator(tmp_path / "flip.safetensors")


def test_foreign_and_mismatched_files(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(WeightsError, match="not an unlearnable generator"):
        load_generator(foreign)
    model, card = tiny_model()
    meta = card.to_metadata()
    meta["arch_kwargs"] = json.dumps({"width": 8})         # card says width 8, tensors are width 4
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    from unlearnable_cli.models.weights import tensors_digest
    meta["tensors_sha256"] = tensors_digest(tensors)
    bad = tmp_path / "mismatch.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(WeightsError, match="do not fit architecture convnet"):
        load_generator(bad)
    meta.update(arch_kwargs=json.dumps({"width": 4}), arch=json.dumps("vit_huge"))
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(WeightsError, match="unknown architecture 'vit_huge'"):
        load_generator(bad)
    meta.update(arch=json.dumps("convnet"), format_version="99")
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(WeightsError, match="format version '99' is not supported"):
        load_generator(bad)
