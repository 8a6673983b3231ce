"""Wire format only, pure: message types, the Settings tree, the codec, audio helpers."""
