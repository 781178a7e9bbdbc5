"""Executing runs: the render / schedule / execute / persist loop and the Python API.

The public names live in `smithers`; import the modules here directly (`runtime.api`,
`runtime.decisions`, ...). This package imports nothing on its own, so a module that needs
one piece of the runtime does not load the engine and asyncio.
"""
