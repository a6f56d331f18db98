"""The one typed port through which clawker talks to Docker (the only importer of docker-py).

Everything above it sees plain dataclasses and a Protocol, so tests can swap the engine."""
