"""Profile features computed from the canonical tables (design brief §3).

Each module holds one family of features. Per-vehicle steps (stay points) are plain functions
over one vehicle's sorted arrays, so that a local process pool or Spark's grouped map can run
them; the frame-level wrappers run them over every vehicle at once.

Modules are imported on demand: ``autopersona.features.staypoints`` needs numba and
compiles its kernels on first use.
"""
