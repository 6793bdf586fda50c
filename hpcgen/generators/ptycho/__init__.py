"""Ptychography generator: far-field diffraction of a known object and probe at several photon
doses, exported in PtychoPINN's DATA-001 NPZ layout. See docs/ptycho.md."""
