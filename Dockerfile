# The README's install, then the service on the bundled GeoPackage, as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    MISSILE_SITES_HOST=0.0.0.0 MISSILE_SITES_PORT=8000

RUN useradd --create-home --uid 10001 analyst
WORKDIR /srv/missile-sites
COPY pyproject.toml README.md ./
COPY app ./app
COPY geodata ./geodata
RUN python -m pip install -e . && python -m pip install --no-deps gdal-utils
# The live catalogue (edits, change log) is seeded from geodata/ on first start; keep it on a volume.
RUN mkdir -p var && chown analyst var
VOLUME /srv/missile-sites/var

USER analyst
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["missile-sites", "serve"]
