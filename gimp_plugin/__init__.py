"""The GIMP 3 plug-in (``nst_gimp.py``), installed into GIMP by ``nst gimp-install``."""
