"""loraforge: raw footage or photos in, a trained LoRA and renders out.

The package lives in services/loraforge; see ARCHITECTURE.md for the map.
"""

import os

__version__ = "0.1.0"

# imageio-ffmpeg starts ffmpeg with preexec_fn=os.setpgrp (to keep Ctrl-C from reaching it),
# which makes Python fork() instead of vfork/posix_spawn and run every library's fork
# handlers in the child. Our processes hold gRPC and NATS threads when they read or write
# video; a child forked from them can die before exec (seen in the fault suite: ffmpeg gone
# without a word, "Broken pipe" on the first frame, gRPC's poller reporting a bad file
# descriptor), and imageio-ffmpeg documents hangs on that fork. Its own switch turns the
# preexec_fn off; ffmpeg then shares our process group, which only matters for Ctrl-C.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")
