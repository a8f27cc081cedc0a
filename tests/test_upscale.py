"""`satsr upscale`: tiling, blending, georeferencing, masks, dtypes and CLI errors.

Rasters are small windows cut from the real files of tests/data (keeping their CRS,
nodata, alpha and dtype), models are tiny seeded generators, so the file runs in seconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from helpers import assert_clean_failure, assert_same_georef, upscale_cli
from rasterio.enums import ColorInterp
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from satsr.data.scaling import BandScaling
from satsr.inference.engine import Engine, super_resolve
from satsr.inference.modelfile import save_model
from satsr.inference.tiling import TileGrid, axis_tiles, receptive_radius
from satsr.inference.writer import upscale_raster
from satsr.nn.generator import Generator

FEATURES = 8  # tiny generators: the behaviour under test does not depend on width

pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(bands: int = 3, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(bands, 4, n_blocks=2, features=FEATURES).eval()


def _model(path: Path, bands: int = 3, scaling: BandScaling | None = None,
           gsd: tuple[float, float] | None = None) -> Path:
    """A seeded tiny model file in the satsr format."""
    meta = {"variant": "mse", "scaling": (scaling or BandScaling.for_uint8(bands)).to_dict(),
            "gsd_range": list(gsd) if gsd else None}
    return save_model(path, _gen(bands), meta)


def _crop(src: Path, window: Window, dst: Path) -> Path:
    """Cut `window` of a real raster into a GeoTIFF keeping CRS, nodata, colour interp."""
    with rasterio.open(src) as ds:
        data = ds.read(window=window)
        profile = {"driver": "GTiff", "width": int(window.width), "height": int(window.height),
                   "count": ds.count, "dtype": ds.dtypes[0], "crs": ds.crs,
                   "transform": window_transform(window, ds.transform), "nodata": ds.nodata}
        if ds.count == 4 and ColorInterp.alpha in ds.colorinterp:
            profile["photometric"] = "RGB"
            profile["alpha"] = "YES"
        with rasterio.open(dst, "w", **profile) as out:
            out.write(data)
            out.colorinterp = ds.colorinterp
    return dst


def _up(a: np.ndarray, s: int = 4) -> np.ndarray:
    """Nearest upsampling of the last two axes."""
    return np.repeat(np.repeat(a, s, axis=-2), s, axis=-1)


def _real_unit(shared: Path, h: int, w: int) -> np.ndarray:
    """A (3, h, w) window of real imagery in [-1, 1]."""
    with rasterio.open(shared / "netherlands_aerial_0.25m.tif") as ds:
        data = ds.read([1, 2, 3], window=Window(300, 300, w, h))
    return BandScaling.for_uint8(3).to_unit(data)


# ------------------------------------------------------------------------------- tiling

@pytest.mark.parametrize("n_blocks", [1, 3])
def test_receptive_radius_bounds_the_gradient_support(n_blocks):
    torch.manual_seed(0)
    gen = Generator(3, 4, n_blocks=n_blocks, features=4).eval()
    r = receptive_radius(gen)
    assert r == int(np.ceil(4 + 2 * n_blocks + 1 + 1 + 0.5 + 1)) + 1
    size = 2 * r + 9
    x = torch.rand(1, 3, size, size, requires_grad=True)
    c = size // 2
    phases = torch.arange(4)  # every sub-pixel phase of the 4x output
    gen(x)[0, :, 4 * c + phases, 4 * c + phases].sum().backward()
    support = np.argwhere(x.grad[0].abs().sum(0).numpy() > 0)
    reach = np.abs(support - c).max()
    assert reach <= r  # never outside the computed radius...
    assert reach >= r - 2  # ...and the radius is not a gross overestimate


def test_receptive_radius_of_the_residual_resize_conv_generator():
    torch.manual_seed(0)
    gen = Generator(3, 4, n_blocks=2, features=4, residual=True, upsample="nearest").eval()
    torch.nn.init.normal_(gen.tail.weight, std=0.05)  # its zero start hides the conv path
    r = receptive_radius(gen)
    size = 2 * r + 9
    x = torch.rand(1, 3, size, size, requires_grad=True)
    c = size // 2
    phases = torch.arange(4)
    gen(x)[0, :, 4 * c + phases, 4 * c + phases].sum().backward()
    reach = np.abs(np.argwhere(x.grad[0].abs().sum(0).numpy() > 0) - c).max()
    assert r - 2 <= reach <= r


@pytest.mark.parametrize("length,tile,overlap", [(100, 40, 8), (1000, 256, 32), (257, 256, 32),
                                                 (50, 64, 16), (333, 64, 0), (90, 48, 27)])
def test_tiles_cover_the_axis_and_weights_sum_to_one(length, tile, overlap):
    starts, size = axis_tiles(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + size == length and size <= tile
    assert all(b + size - a >= overlap for a, b in zip(starts[1:], starts, strict=False))
    grid = TileGrid.build(length, length, 4, tile, overlap, radius=5)
    np.testing.assert_allclose(grid.sum_y, 1.0, atol=1e-6)
    ideal = (tile / (tile - overlap)) ** 2 * length * length
    assert grid.computed_pixels <= 1.02 * max(ideal, length * length)


def test_tiled_output_equals_whole_image_pass_when_overlap_covers_receptive_field(shared):
    gen = _gen()
    r = receptive_radius(gen)
    x = _real_unit(shared, 60, 72)
    with torch.inference_mode():
        whole = gen(torch.from_numpy(x)[None])[0].numpy()
    tiled = super_resolve(x, gen, tile=2 * r + 20, overlap=2 * r + 1, batch_size=2)
    assert TileGrid.build(60, 72, 4, 2 * r + 20, 2 * r + 1, r).count >= 4
    assert np.abs(tiled - whole).max() < 1e-4
    # the check can fail: a small overlap does not reproduce the whole-image pass
    rough = super_resolve(x, gen, tile=2 * r + 20, overlap=4)
    assert np.abs(rough - whole).max() > 1e-4


def _border_gradient(out: np.ndarray, grid: TileGrid) -> tuple[float, float]:
    """Mean |horizontal gradient| over the columns of tile borders vs all other columns."""
    g = np.abs(np.diff(out, axis=-1)).mean(axis=(0, 1))  # per column pair
    border = np.zeros(g.shape, bool)
    s, tw = grid.scale, grid.tile_w
    for a, b in zip(grid.xs[1:], grid.xs[:-1], strict=True):
        lo, hi = a * s, (b + tw) * s  # the shared strip, output pixels
        border[max(lo - 1, 0):hi] = True
    return float(g[border].mean()), float(g[~border].mean())


def test_no_seam_shows_with_a_small_overlap(shared):
    gen = _gen(seed=1)
    x = _real_unit(shared, 40, 160)
    with torch.inference_mode():
        whole = gen(torch.from_numpy(x)[None])[0].numpy()
    r = receptive_radius(gen)

    def steepness(overlap: int) -> tuple[float, float]:
        """(tiled, whole-image) mean |gradient| across borders relative to elsewhere."""
        tiled = super_resolve(x, gen, tile=40, overlap=overlap)
        grid = TileGrid.build(40, 160, 4, 40, overlap, r)
        assert grid.count >= 4
        a, b = _border_gradient(tiled, grid)
        aw, bw = _border_gradient(whole, grid)
        return a / b, aw / bw

    tiled, content = steepness(12)  # well under 2r + 1, yet blended: no visible seam
    # borders are no steeper than elsewhere, beyond what the image content itself shows there
    assert tiled <= max(1.0, content) * 1.01
    # the measure can fail: tiles cut without overlap (no blending) show their seams
    cut, content = steepness(0)
    assert cut > content * 1.1


# ------------------------------------------------------------------------------- rasters

@pytest.fixture(scope="module")
def crops(shared, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("crops")
    return {
        "naip": _crop(shared / "naip_rgbn_5m.tif", Window(200, 150, 72, 56), root / "naip.tif"),
        "landsat": _crop(shared / "landsat7_bahamas_300m.tif", Window(64, 250, 64, 48),
                         root / "landsat.tif"),
        "bali": _crop(shared / "bali_drone_rgba_0.35m.tif", Window(0, 300, 48, 40),
                      root / "bali.tif"),
        "l8": _crop(shared / "landsat8_rgb16_60m.tif", Window(100, 100, 48, 40), root / "l8.tif"),
    }


def test_output_keeps_crs_footprint_dtype_and_band_order(crops, tmp_path, capsys):
    out = tmp_path / "naip_x4.tif"
    code, err = upscale_cli([crops["naip"], "-o", out, "--method", "nearest"], capsys)
    assert code == 0, err
    with rasterio.open(crops["naip"]) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.count == src.count == 4
        assert dst.dtypes == src.dtypes and (dst.width, dst.height) == (src.width * 4,
                                                                         src.height * 4)
        # absolute: each coefficient and bound within 0.01 output pixel of src's, at x4
        assert_same_georef(dst.transform, src.transform @ Affine.scale(0.25), dst.width,
                           dst.height)
        np.testing.assert_array_equal(dst.read(), _up(src.read()))  # same band order
        assert dst.nodata == src.nodata
        tags = dst.tags()
        assert tags["SATSR_SCALE"] == "4" and tags["SATSR_METHOD"] == "nearest"
        assert dst.profile["tiled"] and dst.profile.get("compress") == "deflate"


def test_model_output_is_tagged_and_in_range(crops, tmp_path, capsys):
    model = _model(tmp_path / "m.safetensors", bands=4, gsd=(4.0, 6.0))
    out = tmp_path / "sr.tif"
    code, err = upscale_cli([crops["naip"], "-o", out, "-m", model, "--tile", "32",
                             "--overlap", "8"], capsys)
    assert code == 0, err
    assert "far outside" not in err
    with rasterio.open(out) as dst:
        tags = dst.tags()
        assert tags["SATSR_VARIANT"] == "mse" and tags["SATSR_MODEL"] == "m.safetensors"
        assert "super-resolved" in tags["SATSR_NOTE"] and tags["SATSR_VERSION"]
        assert dst.read().std() > 0


def test_ground_resolution_far_from_training_range_warns(crops, tmp_path, capsys):
    model = _model(tmp_path / "m.safetensors", bands=4, gsd=(0.1, 0.2))
    code, err = upscale_cli([crops["naip"], "-o", tmp_path / "o.tif", "-m", model], capsys)
    assert code == 0 and "far outside" in err and "warning" in err


def test_landsat_nodata_collar_is_carried_without_dark_halos(crops, tmp_path, capsys):
    out = tmp_path / "l.tif"
    code, err = upscale_cli([crops["landsat"], "-o", out, "--method", "bicubic"], capsys)
    assert code == 0, err
    with rasterio.open(crops["landsat"]) as src, rasterio.open(out) as dst:
        ok_in = src.dataset_mask() > 0
        assert 0.2 < ok_in.mean() < 0.9  # the window straddles the collar
        assert dst.nodata == 0
        np.testing.assert_array_equal(dst.dataset_mask() > 0, _up(ok_in))
        got, ref = dst.read().astype(float), _up(src.read()).astype(float)
    # valid output pixels next to the collar keep the brightness of their source pixel
    from scipy import ndimage
    edge = _up(ok_in) & ~ndimage.binary_erosion(_up(ok_in), iterations=3)
    ratio = got[:, edge].mean() / ref[:, edge].mean()
    assert 0.97 < ratio < 1.03


def test_rgba_alpha_is_carried_as_alpha(crops, tmp_path, capsys):
    model = _model(tmp_path / "m.safetensors")
    out = tmp_path / "b.tif"
    code, err = upscale_cli([crops["bali"], "-o", out, "-m", model, "--tile", "32",
                             "--overlap", "8"], capsys)
    assert code == 0, err
    with rasterio.open(crops["bali"]) as src, rasterio.open(out) as dst:
        assert dst.count == 4 and dst.colorinterp[3] == ColorInterp.alpha
        alpha = src.read(4)
        assert 0 < (alpha == 0).mean() < 1
        np.testing.assert_array_equal(dst.read(4), _up(alpha))
        assert (dst.read([1, 2, 3])[:, _up(alpha) == 0] == 0).all()


def test_uint16_round_trip(crops, tmp_path, capsys):
    out = tmp_path / "n.tif"
    code, err = upscale_cli([crops["l8"], "-o", out, "--method", "nearest"], capsys)
    assert code == 0, err
    with rasterio.open(crops["l8"]) as src, rasterio.open(out) as dst:
        assert dst.dtypes[0] == "uint16"
        np.testing.assert_array_equal(dst.read(), _up(src.read()))
        data = src.read()
    # with a model: restored with the model's own scaling, clipped to its range
    lo, hi = (7000.0, 8000.0, 9500.0), (11000.0, 12000.0, 13000.0)
    scaling = BandScaling("uint16", lo, hi)
    model = _model(tmp_path / "m16.safetensors", scaling=scaling)
    code, err = upscale_cli([crops["l8"], "-o", tmp_path / "m.tif", "-m", model], capsys)
    assert code == 0, err
    with rasterio.open(tmp_path / "m.tif") as dst:
        got = dst.read()
    assert got.dtype == np.uint16
    for b in range(3):
        assert lo[b] <= got[b].min() and got[b].max() <= hi[b]
    # and the values match the in-memory engine run on the same scaled input
    gen = _gen()
    ref = scaling.from_unit(super_resolve(scaling.to_unit(data), gen))
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_png_without_crs_writes_png_and_says_so(crops, tmp_path, capsys):
    png = tmp_path / "img.png"
    with rasterio.open(crops["naip"]) as src:
        data = src.read([1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(png, "w", driver="PNG", width=data.shape[2], height=data.shape[1],
                           count=3, dtype="uint8") as out:
            out.write(data)
    outdir = tmp_path / "out"
    outdir.mkdir()
    code, err = upscale_cli([png, "-o", outdir, "--method", "bicubic"], capsys)
    assert code == 0, err
    assert "no CRS" in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(outdir / "img.png") as dst:
            assert dst.driver == "PNG" and dst.crs is None
            assert (dst.width, dst.height) == (data.shape[2] * 4, data.shape[1] * 4)


def test_cog_has_overviews(shared, tmp_path, capsys):
    src = _crop(shared / "netherlands_aerial_0.25m.tif", Window(0, 0, 160, 160),
                tmp_path / "nl.tif")
    out = tmp_path / "cog.tif"
    code, err = upscale_cli([src, "-o", out, "--method", "nearest", "--cog", "--co",
                             "LEVEL=1"], capsys)
    assert code == 0, err
    with rasterio.open(out) as dst, rasterio.open(src) as inp:
        assert dst.overviews(1) and dst.crs == inp.crs
        assert_same_georef(dst.transform, inp.transform @ Affine.scale(0.25), dst.width,
                           dst.height)
        assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_several_inputs_one_failure_others_finish(crops, tmp_path, capsys):
    bad = tmp_path / "broken.tif"
    bad.write_text("not a raster")
    outdir = tmp_path / "many"
    outdir.mkdir()
    code, err = upscale_cli([crops["naip"], bad, crops["l8"], "-o", outdir, "--method",
                             "nearest"], capsys)
    assert code != 0
    assert "broken.tif" in err and "1 of 3 inputs failed" in err
    assert sorted(p.name for p in outdir.iterdir()) == ["l8.tif", "naip.tif"]


def test_refuses_to_overwrite_without_flag(crops, tmp_path, capsys):
    out = tmp_path / "o.tif"
    out.write_bytes(b"keep me")
    code, err = upscale_cli([crops["l8"], "-o", out, "--method", "nearest"], capsys)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"keep me"
    code, err = upscale_cli([crops["l8"], "-o", out, "--method", "nearest", "--overwrite"], capsys)
    assert code == 0, err
    with rasterio.open(out) as dst:
        assert dst.width == 4 * 48


def test_cli_errors_are_one_line_and_write_nothing(crops, tmp_path, capsys):
    model = _model(tmp_path / "m.safetensors")
    out = tmp_path / "o.tif"
    code, err = upscale_cli([tmp_path / "missing.tif", "-o", out, "-m", model], capsys)
    assert_clean_failure(code, err, tmp_path, "not found")
    code, err = upscale_cli([crops["naip"], "-o", out, "-m", model], capsys)
    assert_clean_failure(code, err, tmp_path, "3 bands", "4 are selected", "--bands")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    code, err = upscale_cli([crops["l8"], "-o", out, "-m", corrupt], capsys)
    assert_clean_failure(code, err, tmp_path, "corrupt.safetensors")
    from safetensors.torch import save_file
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    code, err = upscale_cli([crops["l8"], "-o", out, "-m", foreign], capsys)
    assert_clean_failure(code, err, tmp_path, "not a satsr model")
    code, err = upscale_cli([crops["l8"], "-o", tmp_path / "nope" / "o.tif", "--method",
                             "nearest"], capsys)
    assert_clean_failure(code, err, tmp_path, "does not exist")
    # a uint16 raster and a uint8 model: forcing the model's scaling is refused, and auto
    # measures the raster's own range, which this 48x40 crop is too small for
    code, err = upscale_cli([crops["l8"], "-o", out, "-m", model, "--scaling", "model"], capsys)
    assert_clean_failure(code, err, tmp_path, "uint16", "uint8", "--scaling input")
    code, err = upscale_cli([crops["l8"], "-o", out, "-m", model], capsys)
    assert_clean_failure(code, err, tmp_path, "too small to estimate")


def test_library_call_returns_a_summary(crops, tmp_path):
    res = upscale_raster(crops["l8"], tmp_path / "x.tif", Engine.baseline("bicubic", 2))
    assert (res.width, res.height, res.bands, res.dtype) == (96, 80, 3, "uint16")
    assert "96x80" in res.line() and res.tiles == 1
