"""PBX websocket protocols ("dialects"), sans-I/O: messages in, model events out."""
