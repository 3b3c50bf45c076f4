"""The test cluster: PostgreSQL 15 with PostGIS, reached only through its Unix socket."""

import psycopg


def test_cluster_has_postgis_on_a_socket(pg_cluster):
    """A database on the cluster can create PostGIS and measure a geodesic distance; no TCP port is open."""
    with psycopg.connect(pg_cluster.url(), autocommit=True) as connection:
        connection.execute("CREATE DATABASE cluster_check")
    with psycopg.connect(pg_cluster.url("cluster_check"), autocommit=True) as connection:
        connection.execute("CREATE EXTENSION postgis")
        metres = connection.execute("SELECT ST_Distance('SRID=4326;POINT(0 0)'::geography,"
                                    " 'SRID=4326;POINT(1 0)'::geography)").fetchone()[0]
        listen = connection.execute("SHOW listen_addresses").fetchone()[0]
        version = connection.execute("SHOW server_version_num").fetchone()[0]
    assert 111_300 < metres < 111_330  # one degree of the equator on WGS84
    assert listen == ""
    assert version.startswith("15")
