"""Where a job's inputs come from: ``{"itemId": ID}`` (the user's own content), ``{"uri": PATH}`` (a file under one
of the server's ``--data-root`` folders) or ``{"url": URL}`` (public http(s) only, read through GDAL, only with
``--allow-remote``); a model may also be the EMD JSON itself. Each resolves to the path the run core opens.

The checks are about what a user may make the server read: a path that resolves (symlinks and ``..`` followed)
outside every data root is refused, and so are GDAL's virtual paths (``/vsi...``) and files that list other files
(list files, STAC JSON), whose entries could point anywhere; a VRT is opened and refused if one of its sources lies
outside the roots. A URL whose host is a loopback, private, link-local or reserved address is refused before
anything is sent, so the server cannot be turned against its own network.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import ServerConfig
from .errors import Forbidden, InputError
from .items import ItemStore
from .users import User

EMD_KEYS = ("Framework", "ModelConfiguration", "ModelFile", "ModelType", "Classes")
LISTING_SUFFIXES = (".txt", ".csv", ".json", ".geojson", ".stac")


def parse_reference(value: Any, param: str) -> Any:
    """A parameter as Esri's clients send it (an object, or JSON text of one) as Python data; a plain string that
    is not JSON is a path (an http(s) address is a ``url``)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[0] in "{[":
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{param}: not valid JSON ({exc.msg} at character {exc.pos})") from None
        return {"url": text} if text.lower().startswith(("http://", "https://")) else {"uri": text}
    return value


class Resolver:
    """Resolves one job's inputs for ``user``; ``used`` collects the items it read (they may not be deleted while
    the job has not ended)."""

    def __init__(self, config: ServerConfig, items: ItemStore, user: User) -> None:
        self.config = config
        self.items = items
        self.user = user
        self.used: list[str] = []

    def rasters(self, value: Any, param: str = "inputRaster") -> tuple[str, ...]:
        ref = parse_reference(value, param)
        if ref is None:
            raise InputError(f'{param} is required: give {{"itemId": ...}}, {{"uri": ...}} or {{"url": ...}}')
        refs = ref if isinstance(ref, list) else [ref]
        return tuple(self._raster(r, param) for r in refs)

    def _raster(self, ref: Any, param: str) -> str:
        ref = self._object(ref, param)
        if "itemId" in ref:
            return self._item(ref["itemId"], ("raster",), param)
        if "uri" in ref:
            path = self.local(ref["uri"], param)
            if path.suffix.lower() in LISTING_SUFFIXES:
                raise InputError(
                    f"{param}: {ref['uri']!r} lists other files, which a server does not follow; give a raster file "
                    "or a folder of images"
                )
            if path.suffix.lower() == ".vrt":
                self._check_sources(path, param)
            return os.fspath(path)
        if "url" in ref:
            return self.remote(ref["url"], param)
        raise InputError(f'{param}: give {{"itemId": ...}}, {{"uri": ...}} or {{"url": ...}}')

    def features(self, value: Any, param: str = "inputFeatures") -> tuple[str | None, str | None]:
        """The layer's path and layer name (``{"uri": ..., "layer": NAME}`` picks a GeoPackage's layer)."""
        ref = parse_reference(value, param)
        if ref is None:
            return None, None
        ref = self._object(ref, param)
        layer = ref.get("layer")
        if layer is not None and not isinstance(layer, str):
            raise InputError(f"{param}: layer must be a layer's name")
        if "itemId" in ref:
            item = self.items.get(str(ref["itemId"]), self.user)
            path = self._item(ref["itemId"], ("features", "result"), param)
            return path, layer or item.info.get("layer")
        if "uri" in ref:
            path = self.local(ref["uri"], param)
            if path.is_dir() and path.suffix.lower() != ".gdb":
                raise InputError(f"{param}: {ref['uri']!r} is a folder; give a layer file")
            return os.fspath(path), layer
        if "url" in ref:
            return self.remote(ref["url"], param), layer
        raise InputError(f'{param}: give {{"itemId": ...}}, {{"uri": ...}} or {{"url": ...}}')

    def model(self, value: Any, param: str = "model") -> str:
        ref = parse_reference(value, param)
        if ref is None:
            raise InputError(f'{param} is required: give {{"itemId": ...}}, {{"uri": ...}} or the EMD JSON')
        ref = self._object(ref, param)
        if "itemId" in ref:
            return self._item(ref["itemId"], ("model",), param)
        if "uri" in ref:
            return os.fspath(self.local(ref["uri"], param))
        if "url" in ref:
            raise InputError(
                f"{param}: a model is not read from a URL; upload the .dlpk to My Content and give its itemId"
            )
        if any(key in ref for key in EMD_KEYS):
            return self._inline_emd(ref, param)
        raise InputError(f'{param}: give {{"itemId": ...}}, {{"uri": ...}} or the EMD JSON')

    def _inline_emd(self, emd: dict[str, Any], param: str) -> str:
        """The EMD JSON itself: no inference function (that is code), and a ModelFile under a data root, made
        absolute, since an inline EMD has no folder of its own."""
        if "InferenceFunction" in emd:
            raise InputError(f"{param}: an inline EMD may not name an InferenceFunction; upload the package instead")
        model_file = emd.get("ModelFile")
        if not isinstance(model_file, str) or not model_file:
            raise InputError(f"{param}: the inline EMD needs ModelFile, the model file's path under a data root")
        return json.dumps({**emd, "ModelFile": os.fspath(self.local(model_file, f"{param} ModelFile"))})

    # -- the three kinds of reference ---------------------------------------------------------------------------

    def _object(self, ref: Any, param: str) -> dict[str, Any]:
        if not isinstance(ref, dict):
            raise InputError(f'{param}: expected an object such as {{"itemId": ...}}, got {json.dumps(ref)[:80]}')
        item_props = ref.get("itemProperties")
        if isinstance(item_props, dict) and "itemId" in item_props and "itemId" not in ref:
            ref = {**ref, "itemId": item_props["itemId"]}  # Esri's serviceProperties/itemProperties form
        if "itemId" in ref and not isinstance(ref["itemId"], str):
            raise InputError(f"{param}: itemId must be a string")
        return ref

    def _item(self, item_id: str, kinds: tuple[str, ...], param: str) -> str:
        item = self.items.get(str(item_id), self.user)
        if item.kind not in kinds:
            raise InputError(f"{param}: item {item.name!r} is a {item.kind}; expected a {' or '.join(kinds)}")
        self.used.append(item.id)
        return item.path

    def local(self, text: Any, param: str) -> Path:
        """``text`` as a real path inside one of the data roots (relative paths start at each root in turn)."""
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{param}: uri must be a path")
        if not self.config.data_roots:
            raise Forbidden(
                f"{param}: this server has no --data-root, so uri inputs are refused; upload the file to My Content "
                "and give its itemId"
            )
        if text.startswith("/vsi") or "://" in text or "\x00" in text:
            raise Forbidden(f"{param}: {text!r} is not a plain path; give a file under a data root")
        given = Path(text)
        for root in self.config.data_roots:
            real_root = Path(os.path.realpath(root))
            real = Path(os.path.realpath(given if given.is_absolute() else real_root / given))
            if real != real_root and real_root not in real.parents:
                continue
            if not real.exists():
                raise InputError(f"{param}: {text!r} does not exist under the data root {os.fspath(root)!r}")
            return real
        raise Forbidden(f"{param}: {text!r} is outside the server's data roots")

    def remote(self, url: Any, param: str) -> str:
        """A public http(s) URL, for GDAL's /vsicurl/; refused unless the server allows remote inputs."""
        if not self.config.allow_remote:
            raise Forbidden(f"{param}: url inputs need a server started with --allow-remote")
        parts = urlsplit(url if isinstance(url, str) else "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{param}: {url!r} is not an http(s) URL")
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            raise InputError(f"{param}: cannot resolve the host of {url!r}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global or address.is_multicast:
                raise Forbidden(
                    f"{param}: {parts.hostname} is a loopback, private or reserved address ({address}); only public "
                    "addresses may be read"
                )
        return "/vsicurl/" + url

    def _check_sources(self, path: Path, param: str) -> None:
        import rasterio

        try:
            with rasterio.open(path) as dataset:
                files = dataset.files
        except rasterio.errors.RasterioError as exc:
            raise InputError(f"{param}: cannot open {os.fspath(path)!r}: {exc}") from None
        for name in files[1:]:
            self.local(name, f"{param} (a source of {path.name})")
