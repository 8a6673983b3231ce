#!/bin/sh
# Install Debian's Asterisk English prompts (asterisk-core-sounds-en-wav), once: real telephone
# speech, 8 kHz mono 16-bit WAV, for the phone tests and benchmarks/phone_bench.py
# (tests/speech.py, asterisk()). Elsewhere, point HARKEN_ASTERISK_SOUNDS at the directory of
# the en_US_f_Allison prompts.
set -eu
exec sh "$(dirname "$0")/apt_install.sh" \
    /usr/share/asterisk/sounds/en_US_f_Allison/privacy-prompt.wav \
    "telephone speech for the phone tests" asterisk-core-sounds-en-wav
