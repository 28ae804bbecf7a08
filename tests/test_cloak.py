"""The cloak against pretrained face recognizers (``protect --against recognizers|both``).

Without the faces extra: the site transforms and their landmarks, the PGD on a stand-in
network (it approaches the target, keeps the bound, leaves faceless photos alone, works
for grayscale), the target choice and bank file.  With the extra: ``protect`` through
the command on a real face, against dlib's own descriptor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli, save, small
from unlearnable_cli.config.protect import CloakConfig
from unlearnable_cli.faces import cloak as C
from unlearnable_cli.faces import targets as T
from unlearnable_cli.models.weights import WeightsError

LANDMARKS = np.array([[140, 84], [123, 86], [79, 84], [96, 86], [109, 120]])   # a face in a 250 px photo


class StandIn(torch.nn.Module):
    """Chips (N, 3, 150, 150) -> (N, 128): a fixed random projection of a 8x8 average."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3 * 64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1))


def test_site_transforms_move_the_landmarks_with_the_photo() -> None:
    photo = torch.zeros(3, 250, 200)
    photo[:, 100, 60] = 1                                      # one marked pixel at (x=60, y=100)
    marks = np.array([[60, 100]] * 5)
    view, pts = C.site_view(photo, marks, C.SiteDraw((10, 20, 5, 0), False, None))
    assert view.shape == (3, 230, 185) and view[0, pts[0, 1], pts[0, 0]] == 1
    view, pts = C.site_view(photo, marks, C.SiteDraw((0, 0, 0, 0), True, None))
    assert view.shape == (3, 125, 100) and tuple(pts[0]) == (30, 50)
    jpeg, _ = C.site_view(torch.rand(3, 64, 64), marks, C.SiteDraw((0, 0, 0, 0), False, 80.0))
    assert jpeg.shape == (3, 64, 64)


def test_draws_are_seeded_and_the_first_is_the_photo_as_is() -> None:
    cfg = CloakConfig()
    a = C.sample_draws(6, (250, 250), cfg, torch.Generator().manual_seed(3))
    b = C.sample_draws(6, (250, 250), cfg, torch.Generator().manual_seed(3))
    assert a == b and a[0] == C.SiteDraw((0, 0, 0, 0), False, None)
    many = C.sample_draws(400, (250, 250), cfg, torch.Generator().manual_seed(4))[1:]
    qualities = [d.quality for d in many if d.quality is not None]
    assert 0.35 < len(qualities) / len(many) < 0.65 and 75 <= min(qualities) and max(qualities) <= 95
    assert all(max(d.crop) <= 25 for d in many) and any(d.half for d in many)


@pytest.mark.parametrize("channels", [3, 1])
def test_cloak_approaches_the_target_within_the_bound(channels: int) -> None:
    net = StandIn()
    g = torch.Generator().manual_seed(0)
    photos = torch.rand(2, 3, 250, 250, generator=g)
    if channels == 1:
        photos = photos[:, :1].expand(-1, 3, -1, -1)
    delta = torch.zeros(2, channels, 250, 250)
    bound = 8 / 255
    from unlearnable_cli.faces.chips import chip_geometry, warp_chip
    geometry = chip_geometry(LANDMARKS, (250, 250))
    with torch.no_grad():                                      # a target the bound can reach: photo + a known δ
        reachable = torch.full((3, 250, 250), bound)
        target = net(warp_chip((photos[0] + reachable).clamp(0, 1), geometry)[None].float()).double().expand(2, -1)
    cfg = CloakConfig(steps=8, eot_samples=2)
    out = C.cloak(net, photos, delta, [LANDMARKS, None], target, bound, cfg, torch.Generator().manual_seed(1))
    assert out.shape == delta.shape
    assert out.abs().max() <= bound + 1e-7 and ((photos[:, :channels] + out) >= -1e-7).all()
    assert torch.equal(out[1], delta[1])                       # no face: left as it was

    @torch.no_grad()
    def distance(d: torch.Tensor) -> float:
        chip = warp_chip((photos[0] + d[0]).clamp(0, 1), geometry)
        return float((net(chip[None].float())[0] - target[0]).norm())
    assert distance(out) < 0.5 * distance(delta), (distance(out), distance(delta))


def test_away_objective_moves_the_descriptor_from_its_own_without_a_target() -> None:
    from unlearnable_cli.config.protect import CloakObjective
    from unlearnable_cli.faces.chips import chip_geometry, warp_chip
    net = StandIn()
    photos = torch.rand(1, 3, 250, 250, generator=torch.Generator().manual_seed(2))
    geometry = chip_geometry(LANDMARKS, (250, 250))
    with torch.no_grad():
        own = net(warp_chip(photos[0], geometry)[None].float())[0]

    def moved(objective: CloakObjective, target: torch.Tensor) -> float:
        cfg = CloakConfig(steps=8, eot_samples=2, objective=objective)
        out = C.cloak(net, photos, torch.zeros(1, 3, 250, 250), [LANDMARKS], target[None], 8 / 255, cfg,
                      torch.Generator().manual_seed(1))
        assert out.abs().max() <= 8 / 255 + 1e-7
        with torch.no_grad():
            return float((net(warp_chip((photos[0] + out[0]).clamp(0, 1), geometry)[None].float())[0] - own).norm())
    # the target is the photo's own descriptor: ``target`` stays put, ``away`` moves off it
    stay, away = moved(CloakObjective.TARGET, own.double()), moved(CloakObjective.AWAY, own.double())
    assert away > 0 and stay < 0.25 * away, (stay, away)
    assert C.cloak_loss(own[None], own[None] + 1, own[None], CloakObjective.BOTH) == 128


def test_cloak_objective_needs_the_cloak(tmp_path: Path, tiny_weights: Path) -> None:
    save(small("astronaut"), tmp_path / "in" / "a.png")
    result = run_cli("protect", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_weights,
                     "--cloak-objective", "away", "--quiet")
    assert result.exit_code == 1 and "--against recognizers" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_target_is_the_farthest_centroid_and_the_bank_checks_its_file(tmp_path: Path) -> None:
    bank = torch.tensor([[0.0] * 128, [1.0] * 128, [0.5] * 128], dtype=torch.float64)
    own = torch.zeros(4, 128) + 0.1
    assert C.choose_target(own, bank) == 1
    path = tmp_path / "bank.safetensors"
    T.save_bank(path, bank, ["a", "b", "c"], "a test")
    centroids, names = T.load_bank(path)
    assert torch.equal(centroids, bank) and names == ["a", "b", "c"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(WeightsError, match="not a usable target bank"):
        T.load_bank(path)
    shipped, people = T.load_bank()
    assert shipped.shape == (len(people), 128) and len(people) >= 100


def test_against_recognizers_needs_the_extra(tmp_path: Path, tiny_weights: Path, monkeypatch) -> None:
    from unlearnable_cli.faces import weights
    save(small("astronaut"), tmp_path / "in" / "me" / "a.jpg")
    monkeypatch.setattr(weights, "model_file", lambda *a: (_ for _ in ()).throw(weights._missing("model")))
    result = run_cli("protect", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_weights,
                     "--against", "recognizers", "--quiet")
    assert result.exit_code == 1 and 'pip install "unlearnable[faces]"' in result.output, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("against", ["recognizers", "both"])
def test_protect_against_recognizers_moves_the_descriptor_and_keeps_the_bound(faces_extra, tmp_path: Path,
                                                                              against: str) -> None:
    from skimage import data
    face = Image.fromarray(data.astronaut()).resize((256, 256))
    for i, box in enumerate([(0, 0, 256, 256), (10, 0, 256, 246)]):
        save(face.crop(box), tmp_path / "in" / "me" / f"{i}.png")
    out = tmp_path / "out"
    result = run_cli("protect", tmp_path / "in", "-o", out, "--weights", "faces", "--against", against)
    assert result.exit_code == 0, result.output
    assert "cloaked against pretrained face recognizers" in " ".join(result.output.split())
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["against"] == against and len(settings["cloak_bank_sha256"]) == 64
    for i in range(2):
        a = np.asarray(Image.open(tmp_path / "in" / "me" / f"{i}.png")).astype(int)
        b = np.asarray(Image.open(out / "me" / f"{i}.png")).astype(int)
        assert 0 < np.abs(b - a).max() <= 8                    # the exact bound after 8-bit rounding
        marks = faces_extra.detect_landmarks(a.astype(np.uint8))[:1]
        moved = np.linalg.norm(faces_extra.dlib_descriptors(a.astype(np.uint8), marks)[0]
                               - faces_extra.dlib_descriptors(b.astype(np.uint8), marks)[0])
        assert moved > 0.6, moved                              # beyond face_recognition's match threshold
