"""Satellite illumination: body-frame sun direction -> lit fraction of each named face.

See docs/illumination.md. Modules: ``model`` (YAML / mesh geometry), ``raycast`` (Embree and
all-pairs casters), ``lit`` (lit fractions by ray casting), ``sun`` (sun directions), ``generator``
(the hpcgen contract), ``checks`` (verify), ``export`` (CSV, sky plot).
"""
