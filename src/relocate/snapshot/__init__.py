"""The frozen, checksummed capture of a move: manifest, journal, encrypted secrets."""
