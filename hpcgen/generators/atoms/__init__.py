"""ARC-like "atomic" images: 16×16 uint8 grids holding 1-4 simple coloured objects.

Each image holds blobs, filled rectangles, straight lines and small patterns (checkerboard, L,
T, plus, zigzag), placed without overlap. Per image the generator stores the grid (``images``),
the number of objects placed (``labels``), the object index of every cell (``masks``), the kind
of every object slot (``kinds``) and a deterministic train/val/test assignment (``split``).

Modules: ``params`` (AtomsParams), ``shapes`` (the shape catalogue as flat tables), ``kernel``
(the numba image kernel and its random generator), ``split`` (keyed, exact 80/10/10 split),
``generator`` (the engine contract), ``checks`` (the streaming verifier), ``dataset`` (the
versioned train/val/test directory: npz writer, metadata, validation report) and ``cli``
(``hpcgen dataset atoms``). User documentation: docs/atoms.md.
"""
