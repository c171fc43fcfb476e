"""Pure audio helpers: G.711 codecs, resampling, silence, WAV files. No sockets, no clocks."""
