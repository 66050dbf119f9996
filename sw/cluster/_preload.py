"""Dask preload module of the servers of a TLS lcp cluster (:data:`lcp.sw.cluster.roles.PRELOAD`).

Dask imports it in the server's constructor, before the server listens: the import installs the
role-aware decoding (:func:`~lcp.sw.cluster.roles.install`); :func:`dask_setup` guards the
server's handlers when it starts.
"""

from .roles import dask_setup, install

__all__ = ["dask_setup"]

install()
