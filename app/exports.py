"""Download formats for feature lists: CSV (with WKT), KML (fastkml) and a GeoPackage snapshot."""

from __future__ import annotations

import html
import os
import shutil
import tempfile
import threading
import weakref
from contextlib import closing
from pathlib import Path
from xml.etree import ElementTree

from shapely.geometry import shape
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from app.catalogue import Catalogue
from app.errors import UnsupportedParameter
from app.formats import DOWNLOADS, features_csv, format_for  # noqa: F401  (features_csv: importable here as before)
from app.storage import as_store
from app.vocab import join_text_list

# longest range first: a site is styled by its longest-range class
CLASS_ORDER = ("ICBM", "IRBM", "MRBM", "SRBM")
CLASS_COLOURS = {"ICBM": "ff0000ff", "IRBM": "ff0080ff", "MRBM": "ff00ffff", "SRBM": "ff00ff00"}  # KML aabbggrr
DEFAULT_COLOUR = "ffaaaaaa"
ICON = "http://maps.google.com/mapfiles/kml/shapes/placemark_circle.png"
KML_NAMESPACE = "http://www.opengis.net/kml/2.2"
KML_DATA_FIELDS = ("id", "name", "country", "current_status", "declared_status", "facility_type", "missile_classes")


def _flat(value) -> str | None:
    """Lists as text (join_text_list), dicts as `key=value` pairs so joined, everything else as text."""
    if value is None:
        return None
    if isinstance(value, list):
        return join_text_list(value)
    if isinstance(value, dict):
        return join_text_list(f"{k}={v}" for k, v in value.items())
    return str(value) if not isinstance(value, str) else value


def site_class(properties: dict) -> str:
    """The style class of a feature: its longest-range missile class, else its first, else `unknown`."""
    classes = properties.get("missile_classes") or []
    for name in CLASS_ORDER:
        if name in classes:
            return name
    return classes[0] if classes else "unknown"


def _style_id(name: str) -> str:
    return "class-" + "".join(c if c.isalnum() else "-" for c in name)


def _description(properties: dict, sources: list[dict]) -> str:
    """An HTML description with every value escaped, listing the feature's sources."""
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_flat(v) or '')}</td></tr>"
                   for k, v in properties.items() if not isinstance(v, dict))
    items = "".join(
        f"<li>{html.escape(str(s.get('title') or s['id']))}"
        + (f" ({html.escape(str(s['publisher']))})" if s.get("publisher") else "")
        + (f" <a href=\"{html.escape(str(s['url']))}\">{html.escape(str(s['url']))}</a>"
           if str(s.get("url") or "").startswith(("http://", "https://")) else "")
        + "</li>" for s in sources)
    return f"<table>{rows}</table><h4>Sources</h4><ul>{items}</ul>"


def _sources(catalogue: Catalogue, properties: dict) -> list[dict]:
    ids = list(properties.get("source_ids") or [])
    for name in ("coord_source_id", "source_id"):
        if properties.get(name):
            ids.append(properties[name])
    rows = catalogue.sources_for(ids)
    return [{"id": i, **{c: (None if v != v else v) for c, v in row.items() if c in ("title", "publisher", "url")}}
            for i, row in rows.iterrows()]


def features_kml(catalogue: Catalogue, features: list[dict], title: str) -> str:
    """Features as KML 2.2: one style per missile class, escaped HTML descriptions listing the sources."""
    from fastkml import Document, Placemark, Style, kml  # imported on the first KML asked for: not at start-up
    from fastkml.data import Data, ExtendedData
    from fastkml.styles import IconStyle, LineStyle, StyleUrl

    classes = sorted({site_class(f["properties"]) for f in features})
    styles = [Style(id=_style_id(name), styles=[
        IconStyle(color=CLASS_COLOURS.get(name, DEFAULT_COLOUR), scale=1.0, icon_href=ICON),
        LineStyle(color=CLASS_COLOURS.get(name, DEFAULT_COLOUR), width=2.0)]) for name in classes]
    placemarks = []
    for item in features:
        properties = item["properties"]
        data = [Data(name=k, value=_flat(properties.get(k)) or "") for k in KML_DATA_FIELDS if k in properties]
        placemarks.append(Placemark(
            id=str(item.get("id")), name=str(properties.get("name") or item.get("id")),
            description=_description(properties, _sources(catalogue, properties)),
            style_url=StyleUrl(url="#" + _style_id(site_class(properties))),
            geometry=None if item["geometry"] is None else shape(item["geometry"]),
            extended_data=ExtendedData(elements=data),
        ))
    document = Document(id="missile-sites", name=title, styles=styles, features=placemarks)
    return kml_text(kml.KML(features=[document]))


def kml_text(document) -> str:
    """A KML document as text with KML the default namespace, whichever etree fastkml uses (without lxml it writes
    `kml:` on every element, and togeojson, which most web maps read KML with, then finds no feature)."""
    root = ElementTree.fromstring(document.to_string())  # our own XML: no entities, no DTD
    for element in root.iter():  # ElementTree's default_namespace refuses unqualified attributes, so by hand
        element.tag = element.tag.removeprefix(f"{{{KML_NAMESPACE}}}")
    root.set("xmlns", KML_NAMESPACE)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def gpkg_snapshot(source) -> str:
    """A consistent GeoPackage of a store (or a possibly live GeoPackage's path) in a temp file."""
    handle, path = tempfile.mkstemp(suffix=".gpkg", prefix="missile-sites-")
    os.close(handle)
    return str(as_store(source).export_gpkg(Path(path)))


class ExportCache:
    """One store's newest GeoPackage export and the change id it holds: f=gpkg exports once per data version (a
    PostGIS export takes seconds), and each download gets its own hard link to it, removed once sent."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="missile-sites-exports-"))
        weakref.finalize(self, shutil.rmtree, self.folder, True)  # when the store goes, or at exit
        self.lock = threading.Lock()
        self.path: Path | None = None
        self.change_id = -1

    def download(self, store, at_least: int) -> str:
        """A file of its own holding an export at least as new as change `at_least` (exported when none is)."""
        with self.lock:
            if self.path is None or self.change_id < at_least:
                self._export(store)
            handle, link = tempfile.mkstemp(suffix=".gpkg", prefix="download-", dir=self.folder)
            os.close(handle)
            os.unlink(link)
            os.link(self.path, link)
        return link

    def _export(self, store) -> None:
        """A new export replaces the old (a download linked to the old keeps its own file)."""
        from app import store as gpkg_store
        from app.catalogue import last_change_id
        path = store.export_gpkg(self.folder / f"export-{os.urandom(6).hex()}.gpkg")
        with closing(gpkg_store.connect_readonly(path)) as connection:
            change_id = last_change_id(connection)
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.path, self.change_id = path, change_id


_CACHES: "weakref.WeakKeyDictionary[object, ExportCache]" = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cached_export(source, at_least: int) -> str:
    """A download's own file: the store's cached export when it holds change `at_least`, else a new one."""
    store = as_store(source)
    with _CACHES_LOCK:
        cache = _CACHES.get(store)
        if cache is None:
            cache = _CACHES[store] = ExportCache()
    return cache.download(store, at_least)


def export_response(catalogue: Catalogue, fmt: str, features: list[dict], name: str) -> Response:
    """Features as a download in one of the registry's download formats (csv, kml, gpkg)."""
    form = DOWNLOADS[fmt]
    if form.encode is not None:
        return Response(form.encode(catalogue, features, name), media_type=form.media_type,
                        headers={"Content-Disposition": f'attachment; filename="{name}.{form.name}"'})
    if catalogue.as_of_day is not None:
        raise UnsupportedParameter("f=gpkg is a copy of the current GeoPackage; it cannot answer as_of", parameter="f")
    path = cached_export(catalogue.store, catalogue.last_change)
    return FileResponse(path, media_type=form.media_type, filename="catalogue.gpkg",
                        background=BackgroundTask(os.unlink, path))


SITES_FORMATS = ("geojson", "json", *DOWNLOADS)
"""The `f` values of /sites."""


def sites_format(accept: str, f: str | None) -> str:
    """The /sites format asked by `f`, else by the Accept header; 400 for an unknown `f`."""
    return format_for(accept, f, SITES_FORMATS)
