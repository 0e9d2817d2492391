"""loraforge: raw footage or photos in, a trained LoRA and renders out.

The import root `loraforge` is the `services/` folder; see ARCHITECTURE.md for the map.
"""

__version__ = "0.1.0"
