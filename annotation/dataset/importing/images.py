"""Where the images come from (a folder or a zip, never a path outside it) and checking each
distinct image once (``check_images``, with ``annotation.images.check_image_upload``).
The rules: docs/dataset-import.md, "Images"."""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
import zipfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile

from annotation.images import check_image_upload

from .errors import FileError, row_error, shown
from .rows import Row

KEEP_IMAGE_BYTES = 128 * 2**20  # checked images kept in memory until stored (the rest is read again)


class ImageSource:
    """Where the images come from: ``read(path)`` gives the bytes or raises ValidationError."""

    label = "the images"

    def read(self, path: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _bounded(self, handle, size: int | None) -> bytes:
        limit = settings.MORALE_MAX_IMAGE_BYTES
        if size is not None and size > limit:
            raise ValidationError(f"The image is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB.")
        data = handle.read(limit + 1)
        if len(data) > limit:
            raise ValidationError(f"The image is larger than {limit / 1e6:.1f} MB.")
        return data


class FolderImages(ImageSource):
    """Images in a folder. A path never leaves it: ``..`` is refused earlier, and a symlink
    (a folder on the way or the file itself) must resolve inside the folder."""

    def __init__(self, root: Path):
        self.root = os.path.realpath(root)
        self.label = "the images folder"
        self._dirs: dict[str, str | None] = {}  # sub-folder -> its real path (None: outside)

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def _real_dir(self, directory: str) -> str | None:
        if directory not in self._dirs:  # resolved once per sub-folder, not once per file
            real = os.path.realpath(os.path.join(self.root, directory))
            self._dirs[directory] = real if self._inside(real) else None
        return self._dirs[directory]

    def read(self, path: str) -> bytes:
        directory, _, name = path.rpartition("/")
        real_dir = self._real_dir(directory)
        if real_dir is None:
            raise ValidationError(f"{shown(path)} leads outside the images folder (through a symlink); refused.")
        target = os.path.join(real_dir, name)
        try:
            try:
                fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.EMLINK):
                    raise
                real = os.path.realpath(target)  # the file is a symlink: follow it only inside the folder
                if not self._inside(real):
                    raise ValidationError(
                        f"{shown(path)} leads outside the images folder (through a symlink); refused."
                    ) from None
                fd = os.open(real, os.O_RDONLY)
            with open(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise ValidationError(f"{shown(path)} is not a file.")
                return self._bounded(handle, info.st_size)
        except (FileNotFoundError, NotADirectoryError):
            raise ValidationError(f"{shown(path)} is not in the images folder.") from None
        except IsADirectoryError:
            raise ValidationError(f"{shown(path)} is a folder, not an image file.") from None
        except PermissionError:
            raise ValidationError(f"{shown(path)} cannot be read (permission denied).") from None


def _zip_entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a '..' path that leads outside the zip"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


class ZipImages(ImageSource):
    def __init__(self, file, name: str, owned=None):
        self.label = f"the zip {name}"
        self.owned = owned  # a file this source opened and closes
        try:
            self.zip = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise FileError(f"The images file {shown(name)} is not a readable zip ({exc}).", field="images") from None
        self.entries: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            problem = _zip_entry_problem(info)
            if problem:
                self.zip.close()
                raise FileError(
                    f"The zip holds an unsafe entry {shown(info.filename)} ({problem}); nothing was imported.",
                    field="images",
                )
            if info.is_dir():
                continue
            key = "/".join(p for p in info.filename.replace("\\", "/").split("/") if p not in ("", "."))
            if key in self.entries:
                self.zip.close()
                raise FileError(f"The zip holds {shown(key)} twice; which one is meant is unclear.", field="images")
            self.entries[key] = info
        self.by_basename: dict[str, list[str]] = {}
        for key in self.entries:
            self.by_basename.setdefault(posixpath.basename(key), []).append(key)

    def read(self, path: str) -> bytes:
        info = self.entries.get(path)
        if info is None:
            near = self.by_basename.get(posixpath.basename(path), [])
            hint = f" (did you mean {shown(near[0])}?)" if len(near) == 1 else ""
            raise ValidationError(f"{shown(path)} is not in {self.label}{hint}.")
        try:
            with self.zip.open(info) as handle:
                return self._bounded(handle, info.file_size)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
            raise ValidationError(f"{shown(path)} cannot be read from the zip ({exc}).") from None

    def close(self) -> None:
        self.zip.close()
        if self.owned is not None:
            self.owned.close()


def open_images(images, *, name: str | None = None) -> ImageSource:
    """An ImageSource for a folder path, a zip path or an open zip file; FileError if unusable."""
    if images is None or images == "":
        raise FileError("No images given: name a folder or a zip file.", field="images")
    if not isinstance(images, (str, os.PathLike)):
        return ZipImages(images, name or getattr(images, "name", "upload"))
    path = Path(images)
    if path.is_dir():
        return FolderImages(path)
    if not path.is_file():
        raise FileError(f"The images folder or zip {shown(str(path))} does not exist.", field="images")
    handle = open(path, "rb")
    try:
        return ZipImages(handle, path.name, owned=handle)
    except BaseException:
        handle.close()
        raise


def check_images(rows: list[Row], source: ImageSource, keep: dict[str, bytes]) -> int:
    """Check each distinct image once; set ``row.sha256`` or add the error to every row using it.

    Checked files are kept in ``keep`` (sha256 -> bytes) while they total under
    ``KEEP_IMAGE_BYTES``, so that storing them does not read them again.
    """
    results: dict[str, tuple[str | None, str | None]] = {}  # path -> (sha256, error)
    kept = 0
    for row in rows:
        if row.context is None or row.context.refers_only:  # a row of ratings naming a context gives no image
            continue
        path = row.context.image_path
        if path not in results:
            try:
                data = source.read(path)
                checked = check_image_upload(ContentFile(data, name=posixpath.basename(path)))
                results[path] = (checked.sha256, None)
                if kept + len(data) <= KEEP_IMAGE_BYTES and checked.sha256 not in keep:
                    keep[checked.sha256] = data
                    kept += len(data)
            except ValidationError as exc:
                results[path] = (None, f"{path}: " + " ".join(exc.messages))
        sha, problem = results[path]
        if problem:
            row.errors.append(row_error(row.number, "image_path", problem))
        elif row.context.image_sha256 and row.context.image_sha256 != sha:
            row.errors.append(row_error(row.number, "image_sha256",
                                        f"image_sha256 is {row.context.image_sha256} but {path} has sha256 {sha}."))
        else:
            row.sha256 = sha
    return len(results)
