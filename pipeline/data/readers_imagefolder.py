"""Reader for the ImageNet / torchvision ImageFolder layout: `<root>/<split>/<class>/<image>`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetLayoutError
from .paths import inside_root

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG")


@dataclass(frozen=True)
class FolderImage:
    path: Path  # absolute
    rel: str  # posix, relative to the dataset root
    split: str
    class_name: str
    label: int  # index in the class set, -1 when the folder is not a known class


@dataclass(frozen=True)
class ImageFolderSplit:
    root: Path
    split: str
    classes: list[str]
    images: list[FolderImage]
    folders: list[str]  # class folders actually present in this split


def _has_image_suffix(p: Path) -> bool:
    return p.suffix.lower() in {e.lower() for e in IMAGE_EXTENSIONS}


def is_image_file(p: Path) -> bool:
    return _has_image_suffix(p) and p.is_file()


def class_set(root: Path, split: str = "train") -> list[str]:
    """Sorted class folder names of the reference split (train), as torchvision.datasets.ImageFolder does."""
    base = Path(root) / split
    if not base.is_dir():
        raise DatasetLayoutError(f"{base}: missing; expected an ImageFolder split folder '{split}/<class>/<image>'")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetLayoutError(f"{base}: no class folders; expected '{split}/<class>/<image>'")
    return classes


def read_imagefolder(root: Path, split: str, classes: list[str] | None = None, *,
                     follow_external_symlinks: bool = False) -> ImageFolderSplit:
    """List the images of one split. Folders outside the class set are kept with label -1 (validation
    reports them); class folders absent from this split show up as zero counts, never as a crash.

    Symlinks (split or class folders, images) resolving inside the root are followed; one resolving
    outside raises PathOutsideRootError naming it, unless `follow_external_symlinks`.
    """
    root = Path(root)
    base = root / split
    if not base.is_dir():
        raise DatasetLayoutError(f"{base}: missing; expected an ImageFolder split folder '{split}/<class>/<image>'")
    inside = dict(follow_external_symlinks=follow_external_symlinks)
    inside_root(root, split, source=root, what="split folder", **inside)
    classes = classes if classes is not None else class_set(root, split)
    index = {c: i for i, c in enumerate(classes)}
    folders = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    stray = sorted(f.name for f in base.iterdir() if f.is_file())
    if stray:
        raise DatasetLayoutError(
            f"{base}: files directly under the split folder ({', '.join(stray[:3])}...); "
            "expected every image inside a class folder '<class>/<image>'")
    images = []
    for folder in folders:
        folder_path = inside_root(root, folder, base=base, source=base, what="class folder", **inside)
        for p in sorted(folder_path.iterdir()):
            # Checked before anything follows the entry (is_file, the probe's open).
            if _has_image_suffix(p) and is_image_file(
                    inside_root(root, p.name, base=folder_path, source=folder_path, what="file", **inside)):
                images.append(FolderImage(p, p.relative_to(root).as_posix(), split, folder, index.get(folder, -1)))
    return ImageFolderSplit(root, split, list(classes), images, folders)
