"""Energy-map sequences for next-frame surrogates, written in The Well's HDF5 layout.

Modules: params (domain presets), patterns (base maps), kernels (perturbations: scipy reference
and numba/FFT fast path), sequence (trajectories, CPU and array-module batch), maps (entropy,
pyramid, gradients), well (layout + checker), generator, checks (verify), reader (training),
plot, cli (``hpcgen catalog``). User documentation: docs/energy.md.
"""
