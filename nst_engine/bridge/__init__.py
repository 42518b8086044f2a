"""The bridge between the GIMP plug-in and the engine.

``protocol`` (wire format) and ``client`` (find/start the server, run a job) use the standard
library only: ``nst gimp-install`` copies them into the plug-in as the package ``nst_bridge``.
``server`` and ``jobs`` run in the engine's environment; ``arguments`` derives the plug-in's
arguments from `StyleConfig`.
"""
