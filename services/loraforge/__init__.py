"""loraforge: raw footage or photos in, a trained LoRA and renders out.

The package lives in services/loraforge; see ARCHITECTURE.md for the map.
"""

__version__ = "0.1.0"
