# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploring the missile-sites catalogue
#
# The same public functions as the API and the CLI, with GeoDataFrames you can keep working on.
# Every distance, ring and radius is geodesic on the WGS84 ellipsoid; a site with no sourced
# coordinate keeps a null geometry. This notebook is executed in CI (`tests/test_notebook.py`); its
# `.py` twin (jupytext, percent format) is the one to review and edit:
# `jupytext --sync notebooks/explore.py` rebuilds the `.ipynb`.

# %%
import pandas as pd

from app.catalogue import Catalogue
from app.queries import BorderBand
from app.live import live_path
from app.maps import catalogue_map
from app.settings import Settings

catalogue = Catalogue(live_path(Settings(_env_file=None)))  # the live catalogue, analysts' edits included
print(f"{len(catalogue.sites)} sites, data version {catalogue.version[:12]}…")
catalogue.sites[["name", "facility_type", "current_status", "missile_classes", "geometry"]].head(10)

# %% [markdown]
# ## Which sites lie within 150 km of Seoul?
# `find_sites` returns a `SitePage`: its `.sites` is a GeoDataFrame with `distance_km` added.

# %%
seoul = catalogue.place("Seoul")
near_seoul = catalogue.find_sites(centre=seoul, within_km=150, sort="distance")
near_seoul.sites[["name", "distance_km", "current_status", "missile_types"]]

# %%
assert "sakkanmol" in near_seoul.sites.index, "Sakkanmol is about 136 km from Seoul"
assert (near_seoul.sites["distance_km"] <= 150).all()

# %% [markdown]
# ## Distance of every site to the borders
# Each located site's geodesic distance to the lines that matter to it, in km: its country's land
# borders, its coastline (`coast-prk`), and the lines attached to its country (the Military
# Demarcation Line and the DMZ edges for the Koreas); nearest first in `site_border_table`.

# %%
table = catalogue.site_borders.pivot_table(index="site_id", columns="border_id", values="distance_km")
kinds = catalogue.borders["kind"]
first_columns = sorted((c for c in table.columns if kinds.get(c) in ("mdl", "dmz_edge")),
                       key=lambda c: kinds.get(c) != "mdl")
border_table = table[first_columns + [c for c in table.columns if c not in first_columns]].round(1)
border_table.sort_values(first_columns[0]).head(15)

# %% [markdown]
# The "first belt": sites 50–90 km from the MDL.

# %%
first_belt = catalogue.find_sites(band=BorderBand("mdl", 50, 90))
first_belt.sites[["name", "border_distance_km"]]

# %% [markdown]
# ## Which sites' missiles reach Tokyo and Guam?
# `reach` lists each (site, missile) pair whose published range covers the target, with the margin, its
# interval (± the site's coordinate precision) and a verdict (`reaches`, `reaches_unless_coordinate_errs`, ...).
# Sites whose reach cannot be judged (no coordinate or no published range) are listed apart.

# %%
targets = {"Tokyo": catalogue.place("Tokyo"), "Guam": catalogue.place("Hagåtña (Guam)")}
reach = pd.concat(
    {name: catalogue.reach(target) for name, target in targets.items()}, names=["target", "row"]
).reset_index(level="row", drop=True)
reach.groupby("target")[["site_id", "missile_id"]].nunique()

# %%
reach.loc["Guam"].head(10)

# %%
print("not assessable:", ", ".join(catalogue.unassessable_site_ids()) or "none")

# %% [markdown]
# ## The same map as `GET /map?near=Seoul&within_km=150&rings=true`
# Self-contained: Leaflet and its plugins are inlined, the land and borders are drawn from the
# GeoPackage, and online tiles are only offered as switchable layers.

# %%
m = catalogue_map(catalogue, near_seoul, rings=True, radius_km=150, query="notebook: near=Seoul within_km=150 rings")
m
