"""Each GCN variant's two losses, checked against formulas written out here from raw pieces.

The reference below never calls a module's forward: it runs the layers' weights through
torch.nn.functional (conv, transposed conv, batch norm with batch statistics, as in training),
writes LeakyReLU, BCE and MSE out with torch primitives, and builds

    generator loss = λ1 · mean((Φ(y) − Φ(ŷ))²) + λ2 · BCE(D(ŷ), 1)    [adversarial variants]
    Φ-network loss = BCE(D(y), 1) + BCE(D(ŷ), 0) [discriminator]
                     + mean((AE(y) − y)²) [auto-encoder] + mean((AE(ŷ) − ŷ)²) [with a discriminator]

with BCE(z, t) = −mean(t·log σ(z) + (1 − t)·log(1 − σ(z))), Φ(x) = the first K blocks of the
trunk the discriminator (or the auto-encoder's encoder) uses, D = that trunk's 8 blocks + the
1x1-conv head, AE = trunk + decoder. The reference runs in float64; what satsr's engine
computes (float32) must match it within the error float32 arithmetic can make on a
computation of that size (see `derived`), on any CPU: a float32 reference with fixed atol/rtol
only passed where both happened to round alike.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
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


#: Unit roundoff of float32, the engine's dtype (the reference runs in float64).
U32 = torch.finfo(torch.float32).eps / 2


class Rounding:
    """float32's rounding errors, injected into the float64 reference (see `tolerance`).

    Each reduction of n terms in float32 (a conv output over its fan-in, a batch-norm mean
    over N·H·W) is off by up to γ_n times the sum of the absolute values of its terms
    (Higham, Accuracy and Stability of Numerical Algorithms, §3.1; γ_n: see `gamma`). The
    reference adds that bound, with a random sign per element (per channel for batch-norm
    statistics), to every layer output, and the same relative bound to the gradient flowing
    back through it (the backward pass's reductions). Batch norm over a few pixels amplifies
    these errors a lot: that is why d loss / d trunk conv 1 may be off by 1e-3 of its size.
    """

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def sign(self, like: torch.Tensor) -> torch.Tensor:
        s = torch.randint(0, 2, like.shape, generator=self.gen, dtype=torch.float64)
        return s * 2 - 1

    @staticmethod
    def gamma(n: int) -> float:
        """The relative error of a float32 sum of n terms, as rounding errors add up in
        practice (Higham and Mary 2019, probabilistic bound: √n·u, instead of the worst-case
        n·u that aligned signs give and that would let a wrong gradient pass here)."""
        return math.sqrt(n) * U32

    def add(self, x: torch.Tensor, bound: torch.Tensor, n: int) -> torch.Tensor:
        """x plus a rounding error of at most γ_n · bound per element; the gradient through
        it gets γ_n relative error too."""
        gamma = self.gamma(n)
        x = x + gamma * bound.detach() * self.sign(x)
        if x.requires_grad:
            x.register_hook(lambda g: g * (1 + gamma * self.sign(g)))
        return x


def run_layers(layers: nn.Module | list[nn.Module], x: torch.Tensor,
               rounding: Rounding | None = None) -> torch.Tensor:
    """Apply a stack of layers from their weights alone (training-mode batch norm), in
    float64; with `rounding`, plus the errors float32 may make in each layer."""
    x = x.double()
    for m in layers:
        if not isinstance(m, nn.Module):  # a plain function of the test's own
            x = m(x)
        elif isinstance(m, (nn.Sequential, nn.ModuleList)):
            x = run_layers(m, x, rounding)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            w = m.weight.double()
            b = None if m.bias is None else m.bias.double()
            conv = F.conv_transpose2d if isinstance(m, nn.ConvTranspose2d) else F.conv2d
            y = conv(x, w, b, m.stride, m.padding)
            if rounding is not None:
                with torch.no_grad():
                    bound = conv(x.abs(), w.abs(), None if b is None else b.abs(), m.stride,
                                 m.padding)
                y = rounding.add(y, bound, w[0].numel() + 1)
            x = y
        elif isinstance(m, nn.BatchNorm2d):
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
            if rounding is not None:  # mean and variance: sums of N·H·W terms per channel
                g = rounding.gamma(x.numel() // x.shape[1])
                with torch.no_grad():
                    mean_err = g * x.abs().mean(dim=(0, 2, 3), keepdim=True) * rounding.sign(mean)
                    var_err = g * (x * x).mean(dim=(0, 2, 3), keepdim=True) * rounding.sign(var)
                mean, var = mean + mean_err, var + var_err
            scale = m.weight.double().view(1, -1, 1, 1) / torch.sqrt(var + m.eps)
            y = (x - mean) * scale + m.bias.double().view(1, -1, 1, 1)
            if rounding is not None:  # the subtraction, the product and the sum
                y = rounding.add(y, ((x - mean) * scale).abs() + m.bias.double().abs()
                                 .view(1, -1, 1, 1), 4)
            x = y
        elif isinstance(m, nn.LeakyReLU):
            x = torch.where(x >= 0, x, m.negative_slope * x)
        elif isinstance(m, nn.ReLU):
            x = torch.clamp(x, min=0)
        elif isinstance(m, nn.Tanh):
            x = torch.tanh(x)
            if rounding is not None:
                x = rounding.add(x, x.abs(), 4)
        elif isinstance(m, nn.MaxPool2d):
            x = F.max_pool2d(x, m.kernel_size, m.stride)
        else:
            raise AssertionError(f"reference has no rule for {type(m).__name__}")
    return x


def _mean(terms: torch.Tensor, r: Rounding | None) -> torch.Tensor:
    """mean(terms), with the error of a float32 mean of that many terms under `r`."""
    m = terms.mean()
    if r is not None:
        m = r.add(m, terms.abs().mean(), terms.numel() + 1)
    return m


def ref_bce(z: torch.Tensor, target: float, r: Rounding | None = None) -> torch.Tensor:
    s = torch.sigmoid(z.double())
    terms = -(target * torch.log(s) + (1 - target) * torch.log(1 - s))
    if r is not None:  # sigmoid, log and the products: a few roundings per element
        terms = r.add(terms, terms.abs() + 1, 8)
    return _mean(terms, r)


def ref_mse(a: torch.Tensor, b: torch.Tensor, r: Rounding | None = None) -> torch.Tensor:
    terms = (a.double() - b.double()) ** 2
    if r is not None:  # the difference (of |a| + |b|) squared, then the square itself
        terms = r.add(terms, (a.double().abs() + b.double().abs()) ** 2, 3)
    return _mean(terms, r)


def trunk_of(phi: PhiNetworks) -> nn.Module:
    """The trunk as the discriminator (else the auto-encoder, else `ran`'s Φ) holds it."""
    if phi.disc is not None:
        return phi.disc.trunk
    if phi.ae is not None:
        return phi.ae.trunk
    return phi.trunk


def ref_phi_features(phi: PhiNetworks, x: torch.Tensor, k: int,
                     r: Rounding | None = None) -> torch.Tensor:
    return run_layers(list(trunk_of(phi).blocks)[:k], x, r)


def ref_logits(phi: PhiNetworks, x: torch.Tensor, r: Rounding | None = None) -> torch.Tensor:
    assert phi.disc is not None
    return run_layers(phi.disc.head, run_layers(phi.disc.trunk.blocks, x, r), r)


def ref_generator_loss(variant: str, real, fake, phi, vgg, k, l1, l2,
                       r: Rounding | None = None) -> dict[str, torch.Tensor]:
    kind = PHI_KIND[variant]
    if kind == "identity":
        content = ref_mse(fake, real, r)
    elif kind == "vgg":
        content = ref_mse(run_layers(vgg, fake, r), run_layers(vgg, real, r), r)
    else:
        content = ref_mse(ref_phi_features(phi, fake, k, r), ref_phi_features(phi, real, k, r),
                          r)
    out = {"g_content": content, "total": l1 * content}
    if variant in ADVERSARIAL:
        out["g_adv"] = ref_bce(ref_logits(phi, fake, r), 1.0, r)
        out["total"] = out["total"] + l2 * out["g_adv"]
    return out


def ref_phi_loss(variant: str, real, fake, phi, r: Rounding | None = None
                 ) -> dict[str, torch.Tensor]:
    parts: dict[str, torch.Tensor] = {}
    names = PHI_PARTS[variant] or []
    if "d_real" in names:
        parts["d_real"] = ref_bce(ref_logits(phi, real, r), 1.0, r)
        parts["d_fake"] = ref_bce(ref_logits(phi, fake, r), 0.0, r)
    for name, x in (("rec_real", real), ("rec_fake", fake)):
        if name in names:
            assert phi.ae is not None
            parts[name] = ref_mse(run_layers(phi.ae.decoder.net,
                                             run_layers(phi.ae.trunk.blocks, x, r), r), x, r)
    return parts


#: Draws of float32 rounding errors the tolerance is taken over, and the factor on the
#: largest deviation seen: the draws' random signs estimate what aligned signs would give.
DRAWS, SAFETY = 4, 8.0


def derived(reference: Callable[[Rounding | None], dict[str, torch.Tensor]]
            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the float64 reference's values, the float32 engine's tolerance on each).

    The tolerance is what float32 arithmetic can do to this computation, of this size, on
    these tensors, on any processor: the reference run again with every operation's
    rounding error bound injected (see `Rounding`), the largest deviation over a few draws
    times SAFETY, plus the final rounding of each value to float32. Derived from the
    computation and u = 2^-24, never from what one machine's kernels happened to give.
    """
    exact = {k: v.detach() for k, v in reference(None).items()}
    dev = {k: torch.zeros_like(v) for k, v in exact.items()}
    for seed in range(DRAWS):
        for k, v in reference(Rounding(seed)).items():
            dev[k] = torch.maximum(dev[k], (v.detach() - exact[k]).abs())
    tol = {k: SAFETY * dev[k] + 4 * U32 * exact[k].abs() for k in exact}
    return exact, tol


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


def close(a: torch.Tensor, b: torch.Tensor, tol: torch.Tensor | float, what: str) -> None:
    """|a - b| <= tol, element by element (tol from `derived`, or a float32 rounding bound)."""
    diff = (torch.as_tensor(a).detach().double() - torch.as_tensor(b).detach().double()).abs()
    tol = torch.as_tensor(tol, dtype=torch.float64).expand_as(diff)
    worst = int(torch.argmax(diff - tol))
    assert bool((diff <= tol).all()), (
        f"{what}: off by {float(diff.flatten()[worst]):.3g} where float32 allows "
        f"{float(tol.flatten()[worst]):.3g}")


def same_f32(a: torch.Tensor, b: torch.Tensor, n: int, what: str) -> None:
    """a and b: the same float32 computation of reductions of at most n terms, run twice
    (maybe by different kernels): equal within γ_n of their magnitude."""
    close(a, b, n * U32 * float(b.detach().abs().max()) * 2, what)


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

    def reference(r: Rounding | None) -> dict[str, torch.Tensor]:
        out = ref_generator_loss(variant, real, fake, phi, vgg, depth, l1, l2, r)
        (out["grad"],) = torch.autograd.grad(out["total"], fake)
        return out

    ref, tol = derived(reference)
    assert set(parts) == set(ref) - {"total", "grad"}
    for name, value in parts.items():
        close(value, ref[name], tol[name], f"{variant} {name}")
    close(total, ref["total"], tol["total"], f"{variant} total")
    (g_engine,) = torch.autograd.grad(total, fake)
    close(g_engine, ref["grad"], tol["grad"], f"{variant} d loss / d fake")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lambda2_scales_the_adversarial_term_and_lambda1_the_content_term(variant):
    phi, real, fake = fixed(variant)
    v, vgg = get_variant(variant), tiny_vgg()

    def total(l1: float, l2: float) -> torch.Tensor:
        with torch.no_grad():
            return generator_loss(v, real, fake, phi, vgg, 1, l1, l2)[0].double()

    ref, tol = derived(lambda r: ref_generator_loss(variant, real, fake, phi, vgg, 1, 1.0,
                                                    0.0, r))
    zero = torch.zeros((), dtype=torch.float64)
    adv, t_adv = ref.get("g_adv", zero), tol.get("g_adv", zero)
    content, t_content = ref["g_content"], tol["g_content"]

    def t(l1: float, l2: float) -> torch.Tensor:  # the engine's total at (λ1, λ2), in float32
        return l1 * t_content + l2 * t_adv + 4 * U32 * (l1 * content + l2 * adv)

    close(total(1.0, 0.0), content, t(1.0, 0.0), "λ2 = 0: content only")
    close(total(1.0, 0.5) - total(1.0, 1e-3), (0.5 - 1e-3) * adv, t(1.0, 0.5) + t(1.0, 1e-3),
          "slope in λ2")
    close(total(3.0, 1e-3) - total(1.0, 1e-3), 2.0 * content, t(3.0, 1e-3) + t(1.0, 1e-3),
          "slope in λ1")
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
        ref, tol = derived(lambda r: {"bce": ref_bce(ref_logits(adv, fake, r), 1.0, r),
                                      "nsat": -F.logsigmoid(ref_logits(adv, fake, r)).mean()})
        close(t_adv, t_dis + l2 * ref["bce"], l2 * tol["bce"] + 4 * U32 * t_adv.abs(),
              "adv = dis + λ2 BCE")
        assert torch.equal(p_adv["g_content"], p_dis["g_content"]), "same content term"
        # non-saturating: −log σ(D(ŷ)), not log(1 − σ(D(ŷ)))
        close(p_adv["g_adv"], ref["nsat"], tol["bce"], "−log D(G(x))")
        for a, b in zip(dis(real, fake)[1].values(), adv(real, fake)[1].values(), strict=True):
            assert torch.equal(a, b), "same Φ-network loss"  # same networks, same tensors


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
    fan_in = max(b[0].weight[0].numel() for b in trunk.blocks[:depth])
    same_f32(seen[0], trunk.features(real, depth), fan_in, "Φ(y)")
    same_f32(seen[1], trunk.features(fake, depth), fan_in, "Φ(ŷ)")
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
    weight = trunk_of(phi).blocks[0][0].weight

    def reference(r: Rounding | None) -> dict[str, torch.Tensor]:
        out = ref_phi_loss(variant, real, fake, phi, r)
        out["total"] = sum(out.values())
        (out["grad"],) = torch.autograd.grad(out["total"], weight)
        return out

    ref, tol = derived(reference)
    assert list(parts) == PHI_PARTS[variant]
    for name, value in parts.items():
        close(value, ref[name], tol[name], f"{variant} {name}")
    close(total, ref["total"], tol["total"], f"{variant} total")
    (grad,) = torch.autograd.grad(total, weight)
    close(grad, ref["grad"], tol["grad"], f"{variant} d loss / d trunk conv 1")


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
        ref, tol = derived(lambda r: ref_phi_loss(variant, hr, fake.detach(), phi_before, r))
        for name, value in zip(expected_phi, phi_values, strict=True):
            close(value, ref[name], tol[name], f"engine {variant} {name}")
    g_values = t.model.generator_step(hr, fake)
    vgg = None
    if t.model.vgg is not None:  # [-1, 1] -> ImageNet-normalised input, then VGG's layers
        mean, std = t.model.vgg.mean, t.model.vgg.std
        vgg = [lambda x: ((x + 1.0) * 0.5 - mean) / std, *t.model.vgg.features]
    ref_g, tol_g = derived(lambda r: ref_generator_loss(variant, hr, fake.detach(), t.model.phi,
                                                        vgg, 2, 1.0, 0.1, r))
    for name, value in zip(["g_content", "g_adv"], g_values, strict=False):
        close(value, ref_g[name], tol_g[name], f"engine {variant} {name}")
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
