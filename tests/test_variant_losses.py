"""Each GCN variant's two losses, checked against formulas written out here from raw pieces.

The reference below never calls a module's forward: it runs the layers' weights through
torch.nn.functional (conv, transposed conv, batch norm with batch statistics, as in training),
writes LeakyReLU, BCE and MSE out with torch primitives, and builds

    generator loss = λ1 · mean((Φ(y) − Φ(ŷ))²) + λ2 · BCE(D(ŷ), 1)    [adversarial variants]
    Φ-network loss = BCE(D(y), 1) + BCE(D(ŷ), 0) [discriminator]
                     + mean((AE(y) − y)²) [auto-encoder] + mean((AE(ŷ) − ŷ)²) [with a discriminator]

with BCE(z, t) = −mean(t·log σ(z) + (1 − t)·log(1 − σ(z))), Φ(x) = the first K blocks of the
trunk the discriminator (or the auto-encoder's encoder) uses, D = that trunk's 8 blocks + the
1x1-conv head, AE = trunk + decoder. What satsr's engine computes must match to ~1e-6.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import write_dataset
from torch import nn

from satsr.nn import Generator
from satsr.nn.phi import VARIANTS, PhiNetworks, get_variant
from satsr.training.config import TrainConfig
from satsr.training.loop import Trainer
from satsr.training.losses import generator_loss

ATOL, RTOL = 1e-6, 1e-5
HR = 32  # the trunk's stride is 16: a 2x2 map of logits per image

#: What each variant is, written independently of satsr.nn.phi.VARIANTS.
PHI_KIND = {"mse": "identity", "ran": "trunk", "rec": "trunk", "cla": "vgg", "dis": "trunk",
            "adv": "trunk", "dis+rec": "trunk", "adv+rec": "trunk", "adv+mse": "identity",
            "adv+cla": "vgg"}
ADVERSARIAL = {"adv", "adv+rec", "adv+mse", "adv+cla"}
#: The Φ-network loss parts each variant trains (None: no Φ step at all). `rec` alone
#: reconstructs real images only; with a discriminator (dis+rec, adv+rec) generated ones too.
PHI_PARTS: dict[str, list[str] | None] = {
    "mse": None, "ran": None, "cla": None,
    "rec": ["rec_real"],
    "dis": ["d_real", "d_fake"], "adv": ["d_real", "d_fake"],
    "adv+mse": ["d_real", "d_fake"], "adv+cla": ["d_real", "d_fake"],
    "dis+rec": ["d_real", "d_fake", "rec_real", "rec_fake"],
    "adv+rec": ["d_real", "d_fake", "rec_real", "rec_fake"],
}
TRAINS_PHI = {v for v, parts in PHI_PARTS.items() if parts}

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- the reference


def run_layers(layers: nn.Module | list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Apply a stack of layers from their weights alone (training-mode batch norm)."""
    for m in layers:
        if not isinstance(m, nn.Module):  # a plain function of the test's own
            x = m(x)
        elif isinstance(m, (nn.Sequential, nn.ModuleList)):
            x = run_layers(m, x)
        elif isinstance(m, nn.ConvTranspose2d):
            x = F.conv_transpose2d(x, m.weight, m.bias, m.stride, m.padding)
        elif isinstance(m, nn.Conv2d):
            x = F.conv2d(x, m.weight, m.bias, m.stride, m.padding)
        elif isinstance(m, nn.BatchNorm2d):
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
            x = (x - mean) / torch.sqrt(var + m.eps) * m.weight.view(1, -1, 1, 1) \
                + m.bias.view(1, -1, 1, 1)
        elif isinstance(m, nn.LeakyReLU):
            x = torch.where(x >= 0, x, m.negative_slope * x)
        elif isinstance(m, nn.ReLU):
            x = torch.clamp(x, min=0)
        elif isinstance(m, nn.Tanh):
            x = torch.tanh(x)
        elif isinstance(m, nn.MaxPool2d):
            x = F.max_pool2d(x, m.kernel_size, m.stride)
        else:
            raise AssertionError(f"reference has no rule for {type(m).__name__}")
    return x


def ref_bce(z: torch.Tensor, target: float) -> torch.Tensor:
    s = torch.sigmoid(z.double())
    return -(target * torch.log(s) + (1 - target) * torch.log(1 - s)).mean()


def ref_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a.double() - b.double()) ** 2).mean()


def trunk_of(phi: PhiNetworks) -> nn.Module:
    """The trunk as the discriminator (else the auto-encoder, else `ran`'s Φ) holds it."""
    if phi.disc is not None:
        return phi.disc.trunk
    if phi.ae is not None:
        return phi.ae.trunk
    return phi.trunk


def ref_phi_features(phi: PhiNetworks, x: torch.Tensor, k: int) -> torch.Tensor:
    return run_layers(list(trunk_of(phi).blocks)[:k], x)


def ref_logits(phi: PhiNetworks, x: torch.Tensor) -> torch.Tensor:
    assert phi.disc is not None
    return run_layers(phi.disc.head, run_layers(phi.disc.trunk.blocks, x))


def ref_generator_loss(variant: str, real, fake, phi, vgg, k, l1, l2) -> dict[str, torch.Tensor]:
    kind = PHI_KIND[variant]
    if kind == "identity":
        content = ref_mse(fake, real)
    elif kind == "vgg":
        content = ref_mse(run_layers(vgg, fake), run_layers(vgg, real))
    else:
        content = ref_mse(ref_phi_features(phi, fake, k), ref_phi_features(phi, real, k))
    out = {"g_content": content, "total": l1 * content}
    if variant in ADVERSARIAL:
        out["g_adv"] = ref_bce(ref_logits(phi, fake), 1.0)
        out["total"] = out["total"] + l2 * out["g_adv"]
    return out


def ref_phi_loss(variant: str, real, fake, phi) -> dict[str, torch.Tensor]:
    parts: dict[str, torch.Tensor] = {}
    names = PHI_PARTS[variant] or []
    if "d_real" in names:
        parts["d_real"] = ref_bce(ref_logits(phi, real), 1.0)
        parts["d_fake"] = ref_bce(ref_logits(phi, fake), 0.0)
    for name, x in (("rec_real", real), ("rec_fake", fake)):
        if name in names:
            assert phi.ae is not None
            parts[name] = ref_mse(run_layers(phi.ae.decoder.net,
                                             run_layers(phi.ae.trunk.blocks, x)), x)
    return parts


# --------------------------------------------------------------------------- fixed tensors


def tiny_vgg() -> nn.Module:
    """A seeded stand-in for VGG19 (generator_loss takes any frozen feature network)."""
    torch.manual_seed(7)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    return net.requires_grad_(False)


def fixed(variant: str, seed: int = 0):
    """Seeded Φ networks (training mode), a real batch and a generated one (needs grad)."""
    torch.manual_seed(seed)
    phi = PhiNetworks(get_variant(variant), 3).train()
    real = torch.rand(2, 3, HR, HR) * 2 - 1
    g = Generator(3, 4, n_blocks=1, features=8).train()
    fake = g(F.avg_pool2d(real, 4)).detach().requires_grad_(True)
    return phi, real, fake


def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(a.double(), b.double(), atol=ATOL, rtol=RTOL, msg=what)


def test_the_variant_table_is_the_one_written_here():
    assert set(VARIANTS) == set(PHI_KIND)
    for name, v in VARIANTS.items():
        assert v.adversarial == (name in ADVERSARIAL), name
        assert v.trains_phi == (name in TRAINS_PHI), name
        assert (v.phi in ("random", "trunk")) == (PHI_KIND[name] == "trunk"), name
    assert VARIANTS["ran"].phi == "random" and not VARIANTS["ran"].trains_phi


# --------------------------------------------------------------------------- generator loss


@pytest.mark.parametrize("depth", [1, 4])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generator_loss_and_its_gradient_match_the_hand_formula(variant, depth):
    phi, real, fake = fixed(variant)
    phi.requires_grad_(False)  # the engine freezes Φ during the generator step
    vgg = tiny_vgg()
    l1, l2 = 0.7, 0.05
    total, parts = generator_loss(get_variant(variant), real, fake, phi, vgg, depth, l1, l2)
    ref = ref_generator_loss(variant, real, fake, phi, vgg, depth, l1, l2)
    assert set(parts) == set(ref) - {"total"}
    for name, value in parts.items():
        close(value, ref[name], f"{variant} {name}")
    close(total, ref["total"], f"{variant} total")
    (g_engine,) = torch.autograd.grad(total, fake)
    (g_ref,) = torch.autograd.grad(ref["total"], fake)
    close(g_engine, g_ref, f"{variant} d loss / d fake")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lambda2_scales_the_adversarial_term_and_lambda1_the_content_term(variant):
    phi, real, fake = fixed(variant)
    v, vgg = get_variant(variant), tiny_vgg()

    def total(l1: float, l2: float) -> torch.Tensor:
        with torch.no_grad():
            return generator_loss(v, real, fake, phi, vgg, 1, l1, l2)[0].double()

    ref = ref_generator_loss(variant, real, fake, phi, vgg, 1, 1.0, 0.0)
    adv = ref.get("g_adv", torch.zeros((), dtype=torch.float64)).detach()
    content = ref["g_content"].detach()
    close(total(1.0, 0.0), content, "λ2 = 0: content only")
    close(total(1.0, 0.5) - total(1.0, 1e-3), (0.5 - 1e-3) * adv, "slope in λ2")
    close(total(3.0, 1e-3) - total(1.0, 1e-3), 2.0 * content, "slope in λ1")
    if variant in ADVERSARIAL:
        assert adv > 0.1  # a real term, so the slope check above means something
    else:
        assert torch.equal(total(1.0, 0.5), total(1.0, 1e-3))


def test_adv_is_dis_plus_lambda2_times_bce_of_d_on_the_generated_image():
    l2 = 0.01
    dis, real, fake = fixed("dis", seed=3)
    adv, real2, fake2 = fixed("adv", seed=3)
    assert torch.equal(real, real2) and torch.equal(fake, fake2)
    for a, b in zip(dis.state_dict().values(), adv.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # same seed: the very same networks
    with torch.no_grad():
        t_dis, p_dis = generator_loss(get_variant("dis"), real, fake, dis, None, 1, 1.0, l2)
        t_adv, p_adv = generator_loss(get_variant("adv"), real, fake, adv, None, 1, 1.0, l2)
        close(t_adv, t_dis + l2 * ref_bce(ref_logits(adv, fake), 1.0), "adv = dis + λ2 BCE")
        close(p_adv["g_content"], p_dis["g_content"], "same content term")
        # non-saturating: −log σ(D(ŷ)), not log(1 − σ(D(ŷ)))
        z = ref_logits(adv, fake).double()
        close(p_adv["g_adv"], -F.logsigmoid(z).mean(), "−log D(G(x))")
        for a, b in zip(dis(real, fake)[1].values(), adv(real, fake)[1].values(), strict=True):
            close(a, b, "same Φ-network loss")


@pytest.mark.parametrize("depth", [1, 2, 5])
@pytest.mark.parametrize("variant", ["ran", "rec", "dis", "adv+rec"])
def test_phi_is_the_first_k_blocks_of_the_discriminators_own_trunk(variant, depth):
    phi, real, fake = fixed(variant)
    v = get_variant(variant)
    trunk = trunk_of(phi)
    assert trunk is phi.trunk  # one trunk: Φ, the discriminator and the encoder share it
    if phi.disc is not None and phi.ae is not None:
        assert phi.disc.trunk is phi.ae.trunk
    seen: list[torch.Tensor] = []
    hook = trunk.blocks[depth - 1].register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        _, parts = generator_loss(v, real, fake, phi, None, depth, 1.0, 0.0)
    hook.remove()
    # the features compared are trunk.features(x, K) of that trunk, for y and for ŷ
    assert len(seen) == 2
    close(seen[0], trunk.features(real, depth), "Φ(y)")
    close(seen[1], trunk.features(fake, depth), "Φ(ŷ)")
    base = parts["g_content"]
    with torch.no_grad():  # blocks after K do not enter the content term...
        for block in trunk.blocks[depth:]:
            block[0].weight.mul_(3.0)
        after = generator_loss(v, real, fake, phi, None, depth, 1.0, 0.0)[1]["g_content"]
        assert torch.equal(after, base)
        trunk.blocks[depth - 1][0].weight.mul_(1.5)  # ...block K does
        moved = generator_loss(v, real, fake, phi, None, depth, 1.0, 0.0)[1]["g_content"]
        assert not torch.allclose(moved, base)


# --------------------------------------------------------------------------- Φ-network loss


@pytest.mark.parametrize("variant", [v for v in VARIANTS if PHI_PARTS[v]])
def test_phi_network_loss_matches_the_hand_formula(variant):
    phi, real, fake = fixed(variant)
    fake = fake.detach()
    total, parts = phi(real, fake)
    ref = ref_phi_loss(variant, real, fake, phi)
    assert list(parts) == PHI_PARTS[variant]
    for name, value in parts.items():
        close(value, ref[name], f"{variant} {name}")
    close(total, sum(ref.values()), f"{variant} total")
    grads = torch.autograd.grad(total, trunk_of(phi).blocks[0][0].weight)
    ref_grads = torch.autograd.grad(sum(ref.values()), trunk_of(phi).blocks[0][0].weight)
    close(grads[0], ref_grads[0], f"{variant} d loss / d trunk conv 1")


def test_rec_reconstructs_real_images_only_and_star_rec_also_generated_ones():
    for variant, with_fake in (("rec", False), ("dis+rec", True), ("adv+rec", True)):
        phi, real, fake = fixed(variant)
        fake = fake.detach()
        _, parts = phi(real, fake)
        assert ("rec_fake" in parts) == with_fake, variant
        # the real-image term does not depend on ŷ at all in `rec`
        _, parts2 = phi(real, torch.zeros_like(fake))
        assert torch.equal(parts["rec_real"], parts2["rec_real"])


# --------------------------------------------------------------------------- the engine


@pytest.fixture(scope="module")
def ds(shared: Path, tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"), shared / "netherlands_aerial_0.25m.tif",
                         32, {"train": 4, "val": 1})


def trainer(ds: Path, out: Path, variant: str, vgg_file: Path, **kw) -> Trainer:
    base = dict(data=str(ds), out=str(out), variant=variant, hr_size=HR, batch_size=2,
                iterations=1, n_blocks=1, features=8, val_every=0, checkpoint_every=0,
                log_every=1, device="cpu", seed=5, phi_depth=2, lambda2=0.1,
                vgg_weights=str(vgg_file))
    base.update(kw)
    return Trainer(TrainConfig(**base))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_engine_iteration_computes_these_losses_and_moves_the_trunk_iff_phi_trains(
        variant, ds, vgg_file, tmp_path):
    t = trainer(ds, tmp_path / "run", variant, vgg_file)
    torch.manual_seed(11)
    hr = torch.rand(2, 3, HR, HR) * 2 - 1
    if t.model.phi is None:
        assert PHI_KIND[variant] != "trunk" and variant not in ADVERSARIAL
    else:
        t.model.phi.train()
        trunk = trunk_of(t.model.phi)
        conv_before = [b[0].weight.detach().clone() for b in trunk.blocks]
        phi_before = copy.deepcopy(t.model.phi)
    fake = t.model.forward_generator(hr)
    phi_values = t.model.phi_step(hr, fake)
    expected_phi = PHI_PARTS[variant] or []
    assert len(phi_values) == len(expected_phi)
    if expected_phi:  # Φ's loss, on the networks as they were before the step
        ref = ref_phi_loss(variant, hr, fake.detach(), phi_before)
        for name, value in zip(expected_phi, phi_values, strict=True):
            close(value, ref[name], f"engine {variant} {name}")
    g_values = t.model.generator_step(hr, fake)
    vgg = None
    if t.model.vgg is not None:  # [-1, 1] -> ImageNet-normalised input, then VGG's layers
        mean, std = t.model.vgg.mean, t.model.vgg.std
        vgg = [lambda x: ((x + 1.0) * 0.5 - mean) / std, *t.model.vgg.features]
    ref_g = ref_generator_loss(variant, hr, fake.detach(), t.model.phi, vgg, 2, 1.0, 0.1)
    for name, value in zip(["g_content", "g_adv"], g_values, strict=False):
        close(value, ref_g[name], f"engine {variant} {name}")
    assert len(g_values) == 1 + (variant in ADVERSARIAL)
    if t.model.phi is not None:
        trunk = trunk_of(t.model.phi)
        moved = [not torch.equal(a, b[0].weight) for a, b in zip(conv_before, trunk.blocks,
                                                                  strict=True)]
        # the TRUNK's convolutions (not merely some Φ parameter, e.g. a head) move iff Φ trains
        assert moved[0] == moved[1] == (variant in TRAINS_PHI), moved
        if variant in TRAINS_PHI:
            assert t.model.opt_phi is not None
            optimised = {id(p) for g in t.model.opt_phi.param_groups for p in g["params"]}
            assert all(id(p) in optimised for p in trunk.parameters())
        else:
            assert t.model.opt_phi is None


def test_ran_keeps_phi_frozen_at_its_random_init_through_training(ds, vgg_file, tmp_path):
    t = trainer(ds, tmp_path / "run", "ran", vgg_file, iterations=3)
    torch.manual_seed(5)  # what the engine does: seed, build G, then Φ
    Generator(3, 4, 1, 8)
    init = PhiNetworks(get_variant("ran"), 3)
    assert not any(p.requires_grad for p in t.model.phi.parameters()) and t.model.opt_phi is None
    t.run()
    for (k, a), b in zip(init.named_parameters(), t.model.phi.parameters(), strict=True):
        assert torch.equal(a, b), k
