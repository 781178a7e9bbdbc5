"""The long-running parts: the worker, the HTTP API, the web page, tokens and signed links.

Sits between `runtime` and `cli`: it calls the same runtime use cases and serves the same
documents as the CLI. The only importer of the web framework; never runs user code in its
own process. Empty until `smithers serve` lands.
"""
