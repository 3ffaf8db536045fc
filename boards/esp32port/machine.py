# ESP32 port stand-in: machine (placeholder until the stand-ins land).
