"""Read an OGC API - Features collection with QGIS's own OAPIF provider and print what it read as JSON.

Run by Debian's /usr/bin/python3 (where `qgis` is importable), headless: `QT_QPA_PLATFORM=offscreen python3
qgis_oapif.py URL COLLECTION`. Prints {"qgis": version, "fields": {name: QGIS type}, "features": {id: {...}}}.
"""

import json
import os
import sys

from qgis.core import Qgis, QgsApplication, QgsVectorLayer


def plain(value):
    """A QGIS attribute as JSON: NULL as null, QStringList and JSON lists as lists, JSON maps as objects."""
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return None
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def read(url: str, collection: str) -> dict:
    """The layer's fields (with QGIS's type names) and every feature's attributes and point, by id."""
    layer = QgsVectorLayer(f"url='{url}' typename='{collection}'", collection, "OAPIF")
    if not layer.isValid():
        raise SystemExit(f"QGIS could not load the OAPIF layer {collection!r} from {url}: {layer.error().summary()}")
    names = layer.fields().names()
    fields = {f.name(): f.typeName() for f in layer.fields()}
    features = {}
    for feature in layer.getFeatures():
        attributes = {name: plain(value) for name, value in zip(names, feature.attributes())}
        geometry = feature.geometry()
        point = None if geometry.isNull() else [geometry.asPoint().x(), geometry.asPoint().y()]
        features[str(attributes["id"])] = {"attributes": attributes, "point": point}
    result = {"qgis": Qgis.QGIS_VERSION, "provider": layer.providerType(), "fields": fields, "features": features}
    del layer  # before exitQgis: a layer alive at exit crashes QGIS 3.22
    return result


def main() -> None:
    """Start QGIS without a GUI, read the layer, print it."""
    QgsApplication.setPrefixPath("/usr", True)
    application = QgsApplication([], False)
    application.initQgis()
    result = read(sys.argv[1], sys.argv[2])
    sys.stdout.write(json.dumps(result, ensure_ascii=False))
    sys.stdout.flush()
    application.exitQgis()
    os._exit(0)  # QGIS 3.22 may crash tearing down its network threads after exitQgis; the answer is out


if __name__ == "__main__":
    main()
