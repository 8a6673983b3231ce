#!/bin/sh
# Install Debian's Asterisk English prompts (asterisk-core-sounds-en-wav), once: real telephone
# speech, 8 kHz mono 16-bit WAV, for the phone tests and benchmarks/phone_bench.py
# (tests/speech.py, asterisk()). Idempotent: does nothing when the prompts are there.
set -eu

SOUNDS=/usr/share/asterisk/sounds/en_US_f_Allison

if [ -f "$SOUNDS/privacy-prompt.wav" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_asterisk_sounds.sh: $SOUNDS is missing and apt-get is not available;" >&2
    echo "install the Asterisk core sounds (English, WAV) with your system's package manager" >&2
    echo "and point HARKEN_ASTERISK_SOUNDS at the directory of the en_US_f_Allison prompts." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_asterisk_sounds.sh: need root (or sudo) to apt-get install" \
            "asterisk-core-sounds-en-wav" >&2
        exit 1
    fi
fi

echo "installing Debian's asterisk-core-sounds-en-wav (telephone speech for the phone tests)..."
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq asterisk-core-sounds-en-wav
ls "$SOUNDS/privacy-prompt.wav"
