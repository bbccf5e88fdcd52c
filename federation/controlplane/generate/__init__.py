"""Pure xDS generators: (mesh context, registry state, proxy) in, Envoy protos out.

One module per resource type (``clusters``, ``endpoints``, ``listeners``, ``routes``,
``secrets``); ``proxy_config`` assembles them per proxy role. Nothing here does I/O or imports
the server.
"""
