"""``imagefolder:PATH``: a folder of images per class (torchvision's ``ImageFolder``
layout), decoded lazily with Pillow, one image at a time.

``PATH/<class>/<any depth>/<file>``: each subfolder of PATH is a class, named by
its folder, labelled 0..C-1 in sorted order (``Dataset.classes`` keeps the names).
Files with an image extension (``IMAGE_EXTENSIONS``) are the samples; other files
(``.DS_Store``, notes) are ignored, as torchvision does. Options, in the grammar of
encoder specs: ``size=H`` or ``size=HxW`` resizes every image (bilinear) so that
batches stack (default: the images' own size, which must then be one size);
``mode=RGB`` or ``mode=L`` (default: ``L`` if every image is greyscale, else ``RGB``).
Inputs are float32 ``[C, H, W]`` in [0, 1]. The split is seeded and stratified
(``TEST_FRACTION``), as for an npz file without test arrays.

Every image is decoded once when the folder is loaded: an unreadable or truncated
file is *refused*, with how many there are and the first one, before anything
trains. Skipping it instead would make the samples, the split and every client's
partition depend on which files happen to be broken, silently; and a file found
broken mid-run would fail a client after rounds of work. An empty class folder is
refused too: its label would be a class no client can hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relatlas.benchmarks.datasets import TEST_FRACTION, Dataset, first_few, stratified_split
from relatlas.benchmarks.sources import DatasetError, LazyInputs, class_labels, path_and_options, pil_pixels

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
OPTIONS = {"size": "", "mode": ""}
MODES = ("RGB", "L")


@dataclass(frozen=True)
class ImageFiles:
    """Image ``i`` of ``paths``, decoded as a float32 ``[C, H, W]`` array of ``size`` (H, W) in ``mode``."""

    paths: tuple[str, ...]
    size: tuple[int, int]
    mode: str

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as image:
                image = image.convert(self.mode)
                if image.size != self.size[::-1]:
                    image = image.resize(self.size[::-1], Image.Resampling.BILINEAR)
                return pil_pixels(image)
        except OSError as err:  # changed since it was checked
            raise DatasetError(f"image {self.paths[i]} cannot be read: {err}") from None


def imagefolder(argument: str, *, root: str | None, seed: int) -> Dataset:
    """``imagefolder:PATH[:size=H|HxW][:mode=RGB|L]``: see the module's docstring."""
    path, options = path_and_options("imagefolder", argument, OPTIONS)
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"imagefolder {path!r} is not a folder (it must hold one subfolder of images per class)")
    names, paths = _class_files(folder)
    sizes, greyscale = _check_images(path, paths)
    size = _size(path, options["size"], sizes)
    mode = options["mode"] or ("L" if greyscale else "RGB")
    if mode not in MODES:
        raise DatasetError(f"imagefolder {path!r}: mode must be one of {', '.join(MODES)}; got {mode!r}")
    classes, labels = class_labels(names)
    train, test = stratified_split(labels, TEST_FRACTION, seed)
    inputs = LazyInputs.of(ImageFiles(tuple(str(p) for p in paths), size, mode))
    return Dataset(f"imagefolder:{argument}", inputs[train], labels[train], inputs[test], labels[test], classes)


def _class_files(folder: Path) -> tuple[list[str], list[Path]]:
    """Each image's class name and path, classes and files in sorted order; empty classes refused."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"imagefolder {str(folder)!r} has no class subfolders: put each class's images in PATH/<class>/")
    names: list[str] = []
    paths: list[Path] = []
    empty = []
    for cls in classes:
        files = sorted(f for f in cls.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            empty.append(cls.name)
        names += [cls.name] * len(files)
        paths += files
    if empty:
        raise DatasetError(
            f"imagefolder {str(folder)!r}: class folder(s) {first_few(empty)} hold no images "
            f"({', '.join(IMAGE_EXTENSIONS)}): add images or remove the folder"
        )
    return names, paths


def _check_images(path: str, paths: list[Path]) -> tuple[set[tuple[int, int]], bool]:
    """Decode every image once; the set of their (H, W) sizes and whether all are greyscale.
    Unreadable or truncated files are refused, counted, the first named."""
    from PIL import Image

    sizes: set[tuple[int, int]] = set()
    greyscale, broken = True, []
    for file in paths:
        try:
            with Image.open(file) as image:
                image.load()
                sizes.add(image.size[::-1])
                greyscale = greyscale and image.mode in ("1", "L", "I", "I;16", "F")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            broken.append(f"{file} ({err})")
    if broken:
        raise DatasetError(
            f"imagefolder {path!r}: {len(broken)} of {len(paths)} images cannot be read, first {broken[0]}: "
            "repair or remove them (relatlas refuses rather than skips, so every client sees the same samples)"
        )
    return sizes, greyscale


def _size(path: str, option: str, sizes: set[tuple[int, int]]) -> tuple[int, int]:
    """The (H, W) every image is decoded to: the ``size`` option, else the images' one size."""
    if option:
        try:
            height, _, width = option.partition("x")
            size = (int(height), int(width or height))
        except ValueError:
            size = (0, 0)
        if min(size) < 1:
            raise DatasetError(f"imagefolder {path!r}: size must be H or HxW in pixels; got {option!r}")
        return size
    if len(sizes) > 1:
        shown = first_few(sorted(f"{h}x{w}" for h, w in sizes), 3)
        raise DatasetError(f"imagefolder {path!r}: images differ in size ({shown}): pass imagefolder:{path}:size=H or size=HxW")
    return next(iter(sizes))
