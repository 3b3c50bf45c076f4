/* missile-sites map renderer: draws one map from its JSON data document (see app/maps.py).
 *
 * Every piece of text in the document came from the data, so it is only ever turned into text nodes
 * (textContent, createElement, setAttribute), never parsed as HTML. Nothing in this file is
 * generated: the page calls missileSitesDraw(map, dataElementId) once per map.
 */
(function () {
    "use strict";

    var SVG_NS = "http://www.w3.org/2000/svg";
    // Base layers: the offline vector basemap (drawn from the data, always under the tiles) or online tiles.
    var TILE_LAYERS = [
        ["OpenStreetMap (online)", "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors', 19],
        ["Esri World Imagery (online)",
            "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}",
            "Tiles &copy; Esri &mdash; Source: Esri, Maxar, Earthstar Geographics, and the GIS User Community", 18]
    ];

    /* --- text as DOM nodes ------------------------------------------------------------------- */

    function el(tag, className, text) {
        var node = document.createElement(tag);
        if (className) { node.className = className; }
        if (text !== undefined && text !== null) { node.textContent = String(text); }
        return node;
    }

    function append(parent) {
        for (var i = 1; i < arguments.length; i++) {
            var child = arguments[i];
            if (child === null || child === undefined) { continue; }
            parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
        }
        return parent;
    }

    function svg(tag, attributes) {
        var node = document.createElementNS(SVG_NS, tag);
        Object.keys(attributes).forEach(function (name) { node.setAttribute(name, String(attributes[name])); });
        return node;
    }

    function httpHref(url) {
        // Only http(s) links (the builder already dropped any other scheme; checked again here).
        if (typeof url !== "string") { return null; }
        try {
            var parsed = new URL(url);
            return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
        } catch (e) {
            return null;
        }
    }

    /* --- symbols ------------------------------------------------------------------------------ */

    function statusSymbol(status, colour, size) {
        // Colour by missile class; shape and outline by status (STATUS_SHAPES in app/maps.py).
        var c = size / 2, r = size / 2 - 2, root = svg("svg", {width: size, height: size}), shape;
        var outlined = {stroke: "#1a1a1a", "stroke-width": 1.5, fill: colour};
        if (status === "active") {
            shape = svg("circle", Object.assign({cx: c, cy: c, r: r}, outlined));
        } else if (status === "inactive") {
            shape = svg("circle", {cx: c, cy: c, r: r - 1, stroke: colour, "stroke-width": 3.5, fill: "#ffffff"});
        } else if (status === "under_construction") {
            shape = svg("polygon", Object.assign(
                {points: c + ",1 " + (size - 1) + "," + (size - 2) + " 1," + (size - 2)}, outlined));
        } else {
            shape = svg("polygon", Object.assign(
                {points: c + ",1 " + (size - 1) + "," + c + " " + c + "," + (size - 1) + " 1," + c,
                    "stroke-dasharray": "3 2"}, outlined));
        }
        root.appendChild(shape);
        return root;
    }

    function lineSymbol(style) {
        var root = svg("svg", {width: 22, height: 8});
        root.appendChild(svg("line", {x1: 0, y1: 4, x2: 22, y2: 4, stroke: style.color,
            "stroke-width": style.weight, "stroke-dasharray": style.dashArray || ""}));
        return root;
    }

    var CITY_STYLE = {color: "#4a148c", weight: 1, opacity: 0.8, fillColor: "#8e24aa", fillOpacity: 0.3};
    var LAUNCH_COLOUR = "#e65100";

    function citySymbol(size) {
        var root = svg("svg", {width: size, height: size});
        root.appendChild(svg("circle", {cx: size / 2, cy: size / 2, r: size / 2 - 1, stroke: CITY_STYLE.color,
            "stroke-width": 1, fill: CITY_STYLE.fillColor, "fill-opacity": CITY_STYLE.fillOpacity}));
        return root;
    }

    function launchSymbol(size) {
        // A launch: an upward triangle (a rocket's nose), orange.
        var root = svg("svg", {width: size, height: size});
        root.appendChild(svg("polygon", {points: size / 2 + ",1 " + (size - 1) + "," + (size - 1) + " 1," + (size - 1),
            stroke: "#3e2723", "stroke-width": 1, fill: LAUNCH_COLOUR}));
        return root;
    }

    var LaunchIcon = L.DivIcon.extend({
        options: {html: false, iconSize: [12, 12], iconAnchor: [6, 6], className: "launch-icon"},
        createIcon: function (oldIcon) {
            var div = L.DivIcon.prototype.createIcon.call(this, oldIcon);
            var marker = el("div", this.options.copy ? "launch-marker " + COPY_CLASS : "launch-marker");
            marker.setAttribute("data-year", this.options.year);
            div.appendChild(append(marker, launchSymbol(12)));
            return div;
        }
    });

    var SiteIcon = L.DivIcon.extend({
        options: {html: false, iconSize: [18, 18], iconAnchor: [9, 9], className: "site-icon"},
        createIcon: function (oldIcon) {
            var div = L.DivIcon.prototype.createIcon.call(this, oldIcon), site = this.options.site;
            var marker = el("div", this.options.copy ? "site-marker " + COPY_CLASS : "site-marker");
            marker.setAttribute("data-site-id", site.id);
            marker.setAttribute("data-status", site.status);
            div.appendChild(append(marker, statusSymbol(site.status, site.colour, 18)));
            return div;
        }
    });

    // Leaflet's layer control writes layer names as markup; this one writes them as text.
    var TextLayers = L.Control.Layers.extend({
        _addItem: function (item) {
            var label = L.Control.Layers.prototype._addItem.call(
                this, {layer: item.layer, name: "", overlay: item.overlay});
            label.firstChild.lastChild.textContent = " " + item.name;
            return label;
        }
    });

    /* --- popups, legend, footer --------------------------------------------------------------- */

    function table(rows) {
        var body = el("table");
        rows.forEach(function (row) { append(body, append(el("tr"), el("th", null, row[0]), el("td", null, row[1]))); });
        return body;
    }

    function sourceItem(sourceId, sources) {
        var source = sources[sourceId] || {}, title = source.title || sourceId, href = httpHref(source.url);
        var item = el("li"), link;
        if (href) {
            link = el("a", null, title);
            link.href = href;
            link.target = "_blank";
            link.rel = "noopener noreferrer";
        }
        append(item, link || title);
        var details = [source.publisher, source.published_on].filter(function (v) { return v; });
        if (details.length) { append(item, " (" + details.join(", ") + ")"); }
        return append(item, " ", el("code", null, sourceId));
    }

    function sitePopup(site, sources) {
        var popup = site.popup, box = append(el("div", "site-popup"), el("h4", null, site.name), table(popup.rows));
        if (popup.notes) { append(box, el("p", "notes", popup.notes)); }
        if (popup.borders.length) { append(box, el("h5", null, "Distance to borders (geodesic)"), table(popup.borders)); }
        if (popup.observations.length) {
            var list = el("ul");
            popup.observations.forEach(function (o) {
                append(list, append(el("li"), o.text, o.source_id ? " " : null,
                    o.source_id ? el("code", null, o.source_id) : null));
            });
            append(box, el("h5", null, "Observations"), list);
        }
        if (popup.source_ids.length) {
            var ordered = el("ol");
            popup.source_ids.forEach(function (id) { ordered.appendChild(sourceItem(id, sources)); });
            append(box, el("h5", null, "Sources"), ordered);
        }
        return box;
    }

    function legendBox(legend) {
        var box = append(el("div"), el("h4", null, "Missile class (longest range at the site)"));
        legend.classes.forEach(function (c) {
            var swatch = el("span", "swatch");
            swatch.style.background = c.colour;
            append(box, append(el("div"), swatch, c.name));
        });
        append(box, el("h4", null, "Status"));
        legend.statuses.forEach(function (s) {
            append(box, append(el("div"), statusSymbol(s.status, "#9e9e9e", 14), s.text));
        });
        if (legend.borders.length) { append(box, el("h4", null, "Borders")); }
        legend.borders.forEach(function (b) { append(box, append(el("div"), lineSymbol(b.style), b.name)); });
        if ((legend.layers || []).length) { append(box, el("h4", null, "Also drawn")); }
        (legend.layers || []).forEach(function (layer) {
            var symbol = layer.kind === "cities" ? citySymbol(14) : launchSymbol(14);
            append(box, append(el("div", "legend-" + layer.kind), symbol, layer.name));
        });
        return box;
    }

    function footerBox(footer, sources) {
        var box = el("div");
        append(box, append(el("div"), el("b", null, "Query:"), " ", el("code", null, footer.query), " \u00b7 " + footer.counted));
        if (footer.unlocated.length) {
            append(box, el("div", null, "Not drawn (no sourced coordinate): " + footer.unlocated.join(", ")));
        }
        append(box, append(el("div"), el("b", null, "Data version"), " (" + footer.version_note + "): ",
            el("code", null, footer.data_version)));
        append(box, append(el("div"), el("b", null, "Generated:"), " " + footer.generated_at +
            " \u00b7 distances, rings and radius geodesic on WGS84"));
        var list = el("ol");
        footer.source_ids.forEach(function (id) { list.appendChild(sourceItem(id, sources)); });
        append(box, append(el("details", "sources"), el("summary", null, "Sources (" + footer.source_ids.length + ")"), list));
        return box;
    }

    function mapBox(map, position, className, content) {
        var box = L.control({position: position});
        box.onAdd = function () {
            var div = append(el("div", "map-box " + className), content);
            L.DomEvent.disableClickPropagation(div);
            L.DomEvent.disableScrollPropagation(div);
            return div;
        };
        box.addTo(map);
    }

    /* --- layers ------------------------------------------------------------------------------- */

    function textTooltip(feature, layer) {
        if (feature.properties && feature.properties.label) {
            layer.bindTooltip(el("span", null, feature.properties.label), {sticky: true});
        }
    }

    /* --- geometry as sent: delta-encoded integer coordinates (encode_geometry in app/maps.py) --- */

    var ENCODED_DEPTH = {LineString: 0, MultiPoint: 0, Polygon: 1, MultiLineString: 1, MultiPolygon: 2};

    function decodeSequence(flat, scale) {
        var out = [], x = 0, y = 0;
        for (var i = 0; i + 1 < flat.length; i += 2) {
            x += flat[i];
            y += flat[i + 1];
            out.push([x / scale, y / scale]);
        }
        return out;
    }

    function decodeGeometry(geometry) {
        if (!geometry) { return geometry; }
        if (geometry.geometries) { geometry.geometries.forEach(decodeGeometry); }
        if (geometry.encoded === undefined) { return geometry; }
        var scale = Math.pow(10, geometry.encoded);
        var walk = function (value, depth) {
            return depth === 0 ? decodeSequence(value, scale) : value.map(function (v) { return walk(v, depth - 1); });
        };
        geometry.coordinates = walk(geometry.coordinates, ENCODED_DEPTH[geometry.type]);
        delete geometry.encoded;
        return geometry;
    }

    function decoded(geojson) {
        // A FeatureCollection, a Feature, a geometry or a list of them, decoded in place.
        if (Array.isArray(geojson)) { geojson.forEach(decoded); } else if (geojson.features) {
            geojson.features.forEach(decoded);
        } else if (geojson.type === "Feature") { decodeGeometry(geojson.geometry); } else { decodeGeometry(geojson); }
        return geojson;
    }

    function shapesLayer(shapes, dx, group) {
        // The shapes as one group, or (dx: a multiple of 360) their copy one world east or west, added to `group`.
        group = group || L.featureGroup();
        shapes.forEach(function (shape) {
            var style = dx ? copyStyle(shape.style) : shape.style, geojson = decoded(shape.geojson);
            L.geoJSON(dx ? shifted(geojson, dx) : geojson,
                {style: function () { return style; }, onEachFeature: textTooltip}).addTo(group);
        });
        return group;
    }

    function centreMarker(centre, dx) {
        return L.circleMarker([centre.lat, centre.lon + (dx || 0)], {radius: 4, color: "#111111", fill: true,
            fillOpacity: 1, className: dx ? "query-centre " + COPY_CLASS : "query-centre"})
            .bindTooltip(el("span", null, centre.label));
    }

    function siteItems(sites) {
        // The compact site rows (SITE_COLUMNS in app/maps.py) as objects; texts come from the string table.
        var strings = sites.strings;
        return sites.rows.map(function (row, index) {
            return {id: strings[row[0]], lon: row[1], lat: row[2], colour: sites.colours[row[3]],
                status: sites.statuses[row[4]], name: strings[row[5]], index: index};
        });
    }

    function sitePopupData(sites, index) {
        // One site's popup from its compact entry (see expand_sites in app/maps.py).
        var strings = sites.strings, entry = sites.popups[index];
        function pairs(indexes) {
            var result = [];
            for (var i = 0; i + 1 < indexes.length; i += 2) { result.push([strings[indexes[i]], strings[indexes[i + 1]]]); }
            return result;
        }
        return {
            rows: pairs(entry[0]), notes: entry[1] < 0 ? null : strings[entry[1]], borders: pairs(entry[2]),
            observations: pairs(entry[3]).map(function (o) { return {text: o[0], source_id: o[1] || null}; }),
            source_ids: entry[4].map(function (i) { return strings[i]; })
        };
    }

    function siteMarkers(doc, items, dx) {
        // A marker per site (`siteItems`), moved dx degrees east (a world copy) when dx is given.
        var sites = doc.sites;
        return items.map(function (site) {
            var marker = L.marker([site.lat, site.lon + (dx || 0)], {icon: new SiteIcon({site: site, copy: !!dx})});
            marker.bindTooltip(function () { return el("div", null, site.name); }, {sticky: false});
            marker.bindPopup(function () {
                site.popup = site.popup || sitePopupData(sites, site.index);
                return sitePopup(site, doc.sources);
            }, {maxWidth: 380});
            return marker;
        });
    }

    function addMarkers(group, markers) {
        if (group.addLayers) { group.addLayers(markers); } else { markers.forEach(function (m) { group.addLayer(m); }); }
    }

    function siteLayer(doc, drawn, items) {
        var group = doc.sites.cluster ? L.markerClusterGroup({maxClusterRadius: 40}) : L.featureGroup();
        drawn.markers = siteMarkers(doc, items, 0);
        addMarkers(group, drawn.markers);
        return group;
    }

    /* --- cities in range and launches ---------------------------------------------------------- */

    var CITY_CANVAS_ABOVE = 2000;  // more cities than this are drawn on one canvas (SVG slows down with many)

    function cityRadius(population) {
        // Circle radius in pixels: area proportional to population (3 px at 15,000 people, ~23 px at 10 million).
        return Math.min(40, 2.5 + 2 * Math.sqrt(population / 100000));
    }

    function cityItems(cities) {
        var s = cities.strings;
        return cities.rows.map(function (row) {
            return {lon: row[0], lat: row[1], population: row[2], name: s[row[3]], country: s[row[4]],
                nearest: row[5].map(function (p) { return {site: s[p[0]], missile: s[p[1]], distance_km: p[2]}; }),
                pairs: row[6], id: s[row[7]]};
        });
    }

    function cityPopup(city) {
        var box = append(el("div", "site-popup city-popup"), el("h4", null, city.name),
            table([["country", city.country], ["population", city.population.toLocaleString("en")],
                ["GeoNames id", city.id]]));
        var list = el("ul");
        city.nearest.forEach(function (p) {
            append(list, el("li", null, p.site + " \u2014 " + p.missile + ", " + p.distance_km.toFixed(1) + " km"));
        });
        append(box, el("h5", null, "Reached by (nearest first, geodesic)"), list);
        if (city.pairs > city.nearest.length) {
            append(box, el("p", null, "and " + (city.pairs - city.nearest.length) + " more site and missile pairs"));
        }
        return box;
    }

    function cityMarkers(items, renderer, dx) {
        return items.map(function (city) {
            var options = Object.assign({radius: cityRadius(city.population), renderer: renderer,
                className: dx ? "city-marker " + COPY_CLASS : "city-marker"}, CITY_STYLE);
            var marker = L.circleMarker([city.lat, city.lon + (dx || 0)], options);
            marker.bindTooltip(function () { return el("span", null, city.name); });
            marker.bindPopup(function () { return cityPopup(city); }, {maxWidth: 340});
            marker.city = city;
            return marker;
        });
    }

    function cityLayer(doc, drawn, copies) {
        var items = cityItems(doc.cities), group = L.featureGroup();
        var renderer = items.length > CITY_CANVAS_ABOVE ? L.canvas({padding: 0.5}) : undefined;
        drawn.cityMarkers = cityMarkers(items, renderer, 0);
        drawn.cityMarkers.forEach(function (m) { group.addLayer(m); });
        copies.push(function (dx) { cityMarkers(items, renderer, dx).forEach(function (m) { group.addLayer(m); }); });
        return group;
    }

    function launchItems(launches) {
        var s = launches.strings;
        return launches.rows.map(function (row) {
            return {lon: row[0], lat: row[1], year: row[2], date: s[row[3]], missile: s[row[4]], facility: s[row[5]],
                outcome: s[row[6]], source_id: s[row[7]], id: s[row[8]]};
        });
    }

    function launchPopup(launch, sources) {
        var box = append(el("div", "site-popup launch-popup"), el("h4", null, launch.date + " \u2014 " + launch.missile),
            table([["date", launch.date], ["missile", launch.missile], ["facility", launch.facility],
                ["outcome", launch.outcome], ["launch id", launch.id]]));
        if (launch.source_id) {
            append(box, el("h5", null, "Source"), append(el("ol"), sourceItem(launch.source_id, sources)));
        }
        return box;
    }

    function launchMarkers(items, sources, dx) {
        return items.map(function (launch) {
            var marker = L.marker([launch.lat, launch.lon + (dx || 0)],
                {icon: new LaunchIcon({year: launch.year, copy: !!dx})});
            marker.bindTooltip(function () { return el("span", null, launch.date + " " + launch.missile); });
            marker.bindPopup(function () { return launchPopup(launch, sources); }, {maxWidth: 340});
            marker.launch = launch;
            return marker;
        });
    }

    function launchCluster(cluster) {
        var div = el("div", "launch-cluster", String(cluster.getChildCount()));
        return L.divIcon({html: div, className: "launch-cluster-icon", iconSize: [26, 26]});
    }

    function launchLayer(doc, drawn, copies) {
        // Every launch its own marker (clustered: many share a facility's point; a click spreads them out); the
        // slider keeps those up to its year.
        var items = launchItems(doc.launches), all = launchMarkers(items, doc.sources, 0);
        var group = L.markerClusterGroup({maxClusterRadius: 30, iconCreateFunction: launchCluster});
        var state = {year: doc.launches.years ? doc.launches.years[1] : null, shown: all.slice(), count: items.length};
        group.addLayers(all);
        function setYear(year) {
            state.year = year;
            var keep = function (m) { return m.launch.year <= year; };
            group.clearLayers();
            state.shown = all.filter(keep);
            group.addLayers(state.shown);
            state.count = items.filter(function (l) { return l.year <= year; }).length;
            if (state.label) { state.label.textContent = sliderText(year, state.count, items.length); }
        }
        copies.push(function (dx) {
            var more = launchMarkers(items, doc.sources, dx);
            all = all.concat(more);
            setYear(state.year);
        });
        drawn.launchMarkers = all;
        drawn.launchLayer = group;
        drawn.setLaunchYear = setYear;
        drawn.launchState = state;
        return group;
    }

    function sliderText(year, shown, total) {
        return "Launches up to " + year + ": " + shown + " of " + total;
    }

    function launchSlider(map, doc, drawn) {
        // A plain range input: the launches up to the chosen year stay on the map.
        var years = doc.launches.years;
        if (!years) { return; }
        var state = drawn.launchState, input = el("input", "launch-year");
        input.type = "range";
        input.min = years[0];
        input.max = years[1];
        input.step = 1;
        input.value = years[1];
        state.label = el("label", "launch-year-label", sliderText(years[1], state.count, doc.launches.rows.length));
        input.addEventListener("input", function () { drawn.setLaunchYear(Number(input.value)); });
        mapBox(map, "bottomright", "launch-slider", append(el("div"), state.label, el("br"), input));
        drawn.launchSlider = input;
    }

    /* --- across ±180°: the world's copies east and west, drawn as the view reaches them ---------- */

    var COPY_CLASS = "world-copy", MAX_COPIES = 2;

    function shifted(geojson, dx) {
        // A deep copy of a GeoJSON object with every longitude moved by dx degrees.
        function move(coordinates) {
            return typeof coordinates[0] === "number" ? [coordinates[0] + dx].concat(coordinates.slice(1))
                : coordinates.map(move);
        }
        return JSON.parse(JSON.stringify(geojson), function (key, value) {
            return key === "coordinates" && typeof this.type === "string" ? move(value) : value;
        });
    }

    function copyStyle(style) {
        return Object.assign({}, style, {className: ((style.className || "") + " " + COPY_CLASS).trim()});
    }

    function worldCopies(map, draws) {
        // Leaflet draws a vector layer or marker in one world only; a view across ±180° (a Pacific view) shows the
        // next world east or west, so each is drawn there too, once, the first time the view reaches it.
        var done = {0: true};
        function update() {
            var bounds = map.getBounds();
            var first = Math.max(-MAX_COPIES, Math.floor((bounds.getWest() + 180) / 360));
            var last = Math.min(MAX_COPIES, Math.ceil((bounds.getEast() - 180) / 360));
            for (var k = first; k <= last; k++) {
                if (!done[k]) {
                    done[k] = true;
                    draws.forEach(function (drawCopy) { drawCopy(360 * k); });
                }
            }
        }
        map.on("moveend", update);
        update();
    }

    function draw(map, dataElementId) {
        var doc = JSON.parse(document.getElementById(dataElementId).textContent);
        var drawn = {map: map, data: doc, markers: [], overlays: {}};
        document.title = doc.title;
        var landOptions = {pane: "basemap", interactive: false, style: function () { return doc.land_style; }};
        L.geoJSON(decoded(doc.land), landOptions).addTo(map);
        var copies = [function (dx) { L.geoJSON(shifted(doc.land, dx), landOptions).addTo(map); }];
        var base = {"Offline vector basemap": L.layerGroup().addTo(map)};
        TILE_LAYERS.forEach(function (t) { base[t[0]] = L.tileLayer(t[1], {attribution: t[2], maxZoom: t[3]}); });
        var overlays = [];
        doc.overlays.forEach(function (overlay) {
            var group = shapesLayer(overlay.shapes);
            if (overlay.centre) { centreMarker(overlay.centre).addTo(group); }
            overlays.push([overlay.name, group.addTo(map)]);
            copies.push(function (dx) {
                shapesLayer(overlay.shapes, dx, group);
                if (overlay.centre) { centreMarker(overlay.centre, dx).addTo(group); }
            });
        });
        if (doc.centre) {
            centreMarker(doc.centre).addTo(map);
            copies.push(function (dx) { centreMarker(doc.centre, dx).addTo(map); });
        }
        if (doc.cities) { overlays.push([doc.cities.name, cityLayer(doc, drawn, copies).addTo(map)]); }
        if (doc.launches) { overlays.push([doc.launches.name, launchLayer(doc, drawn, copies).addTo(map)]); }
        var items = siteItems(doc.sites), sites = siteLayer(doc, drawn, items).addTo(map);
        overlays.push([doc.sites.name, sites]);
        copies.push(function (dx) { addMarkers(sites, siteMarkers(doc, items, dx)); });
        worldCopies(map, copies);
        var control = new TextLayers({}, {}, {position: "topright", collapsed: true});
        Object.keys(base).forEach(function (name) { control.addBaseLayer(base[name], name); });
        overlays.forEach(function (o) { control.addOverlay(o[1], o[0]); drawn.overlays[o[0]] = o[1]; });
        control.addTo(map);
        mapBox(map, "topright", "legend", legendBox(doc.legend));
        mapBox(map, "bottomleft", "footer", footerBox(doc.footer, doc.sources));
        if (doc.launches) { launchSlider(map, doc, drawn); }
        (window.missileSitesMaps = window.missileSitesMaps || []).push(drawn);
        return drawn;
    }

    window.missileSitesDraw = draw;
})();
